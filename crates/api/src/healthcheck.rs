//! `sovereign healthcheck`: asks a running server's `/health` over loopback, for container
//! health checks on images that carry no curl.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// `Ok` when `GET path` on `127.0.0.1:port` answers 200 within `timeout`.
pub fn probe(port: u16, path: &str, timeout: Duration) -> Result<(), String> {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&address, timeout)
        .map_err(|e| format!("cannot connect to {address}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: sovereign-healthcheck\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("cannot send the request: {e}"))?;
    let mut head = [0_u8; 64];
    let read = stream
        .read(&mut head)
        .map_err(|e| format!("no answer from {address}: {e}"))?;
    let status_line = String::from_utf8_lossy(&head[..read]);
    let status = status_line.split(' ').nth(1).unwrap_or_default();
    if status == "200" {
        Ok(())
    } else {
        Err(format!(
            "{path} answered {}",
            status_line.lines().next().unwrap_or("nothing")
        ))
    }
}
