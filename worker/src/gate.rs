//! [`Gate`]: a handler's say on whether its worker takes more work. A handler that depends on
//! something outside (the `--forward` handler's NATS service) closes it when that is gone and
//! opens it when it is back; the runtime tells the engine, which then asks the master for no
//! work while it holds any attempt (and for one job at a time when it holds none: that job
//! is the handler's probe of whether the dependency is back).
//!
//! Invariants: the gate starts open; only a change wakes the runtime (closing a closed gate
//! again, even for another reason, does not), so a handler may close or open it on every
//! job without flooding the engine with inputs.

use std::sync::Arc;

use tokio::sync::watch;

/// Whether a handler can take work now, and if not, why. Cheap to clone: clones share it.
#[derive(Debug, Clone)]
pub struct Gate {
    /// `None`: open; `Some(why)`: closed.
    state: Arc<watch::Sender<Option<String>>>,
}

impl Default for Gate {
    fn default() -> Self {
        Gate::new()
    }
}

impl Gate {
    /// An open gate.
    pub fn new() -> Self {
        Gate { state: Arc::new(watch::Sender::new(None)) }
    }

    /// The handler can take work again.
    pub fn open(&self) {
        self.state.send_if_modified(|state| state.take().is_some());
    }

    /// The handler cannot take more work now, because `why`.
    pub fn close(&self, why: impl Into<String>) {
        if self.state.borrow().is_some() {
            return;
        }
        let why = why.into();
        self.state.send_if_modified(|state| match state {
            Some(_) => false,
            None => {
                *state = Some(why);
                true
            }
        });
    }

    /// Whether it is open.
    pub fn is_open(&self) -> bool {
        self.state.borrow().is_none()
    }

    /// A receiver that sees every change (for the runtime).
    pub(crate) fn watch(&self) -> watch::Receiver<Option<String>> {
        self.state.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changes_are_seen() {
        let gate = Gate::new();
        let mut seen = gate.watch();
        assert!(gate.is_open());
        gate.open();
        assert!(!seen.has_changed().unwrap());
        gate.close("no responders");
        gate.close("something else");
        assert!(seen.has_changed().unwrap());
        assert_eq!(seen.borrow_and_update().as_deref(), Some("no responders"));
        gate.close("again");
        assert!(!seen.has_changed().unwrap());
        gate.open();
        assert!(seen.has_changed().unwrap());
        assert!(seen.borrow_and_update().is_none());
    }
}
