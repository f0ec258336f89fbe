//! [`Health`]: what `/healthz` and `/readyz` answer, shared between a process's main loop (which
//! says when it is ready, and why not) and its observation listener (which asks).
//!
//! - **Alive** (`/healthz`): the process runs and its NATS connection is up right now (the
//!   client's own connection state, read at each probe; before the first connection it is
//!   down).
//! - **Ready** (`/readyz`): alive, and the component says it can do its job. Each component
//!   decides what that means (a master: leading, or standing by able to take over; a worker:
//!   registered with a leader) and says why in one line.
//!
//! Invariant: readiness changes only through [`Health::set_ready`], which the owner calls on
//! a change of state, never per message: the lock it takes is not on any hot path.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};

/// One probe's answer: whether it passes, and a line saying why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub ok: bool,
    pub text: String,
}

/// A process's health, cheap to clone (all clones share it).
#[derive(Debug, Clone, Default)]
pub struct Health {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    client: OnceLock<async_nats::Client>,
    ready: Mutex<(bool, String)>,
}

impl Health {
    /// Not connected and not ready ("starting").
    pub fn new() -> Self {
        let health = Health::default();
        health.set_ready(false, "starting");
        health
    }

    /// The process has connected: liveness follows this client's connection from now on.
    pub fn connected(&self, client: &async_nats::Client) {
        let _ = self.inner.client.set(client.clone());
    }

    /// Says whether the component is ready, and why (or why not).
    pub fn set_ready(&self, ready: bool, why: impl Into<String>) {
        let mut slot = self.inner.ready.lock().unwrap_or_else(PoisonError::into_inner);
        *slot = (ready, why.into());
    }

    /// Whether the component last said it was ready (regardless of the connection).
    pub fn is_ready(&self) -> bool {
        self.inner.ready.lock().unwrap_or_else(PoisonError::into_inner).0
    }

    /// `/healthz`: alive and connected to NATS.
    pub fn liveness(&self) -> Probe {
        match self.inner.client.get() {
            None => Probe { ok: false, text: "not connected to NATS yet".into() },
            Some(client) => match client.connection_state() {
                async_nats::connection::State::Connected => {
                    Probe { ok: true, text: "ok: connected to NATS".into() }
                }
                state => Probe { ok: false, text: format!("NATS connection {state}") },
            },
        }
    }

    /// `/readyz`: alive and ready.
    pub fn readiness(&self) -> Probe {
        let alive = self.liveness();
        if !alive.ok {
            return alive;
        }
        let (ready, why) = self.inner.ready.lock().unwrap_or_else(PoisonError::into_inner).clone();
        Probe {
            ok: ready,
            text: if ready { format!("ready: {why}") } else { format!("not ready: {why}") },
        }
    }
}
