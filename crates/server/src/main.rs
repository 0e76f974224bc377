//! The `sovereign` binary: parses the command line, loads settings, and hands over to the
//! library crates. The sub-commands are in [`commands`], their arguments in [`cli`].

mod cli;
mod commands;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::commands::report;

#[actix_web::main]
async fn main() -> ExitCode {
    let outcome = match Cli::parse().command {
        Command::Openapi => commands::openapi(),
        Command::CheckConfig => commands::check_config(),
        Command::Healthcheck {
            port,
            path,
            timeout,
        } => commands::healthcheck(port, &path, timeout),
        command => {
            // Every other command runs on the settings; keep the log guard until exit.
            let (settings, _log) = match commands::load() {
                Ok(loaded) => loaded,
                Err(problems) => {
                    report(&problems);
                    return ExitCode::FAILURE;
                }
            };
            commands::run(&settings, command).await
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            report(&format!("error: {message}"));
            ExitCode::FAILURE
        }
    }
}
