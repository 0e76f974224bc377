//! Single flight: one computation per key at a time within this process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

#[derive(Debug, Default)]
pub(crate) struct Flights {
    gates: Mutex<HashMap<String, Arc<AsyncMutex<()>>>>,
}

/// Held while computing a key; dropping it lets the next waiter in and forgets the gate once
/// nobody else is waiting on it.
pub(crate) struct Flight<'a> {
    flights: &'a Flights,
    key: String,
    gate: Arc<AsyncMutex<()>>,
    guard: Option<OwnedMutexGuard<()>>,
}

impl Flights {
    pub(crate) async fn enter(&self, key: &str) -> Flight<'_> {
        let gate = {
            let mut gates = self.gates.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(gates.entry(key.to_owned()).or_default())
        };
        let guard = Arc::clone(&gate).lock_owned().await;
        Flight {
            flights: self,
            key: key.to_owned(),
            gate,
            guard: Some(guard),
        }
    }
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut gates = self
            .flights
            .gates
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // The map and this flight hold the only references: nobody is waiting.
        if Arc::strong_count(&self.gate) == 2 {
            gates.remove(&self.key);
        }
    }
}
