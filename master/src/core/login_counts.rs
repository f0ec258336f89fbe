//! [`LoginCounts`]: how many workers are registered under each login, for the limit on
//! registrations per login (`Policy::max_workers_per_login`, a login's `max_workers`). Derived
//! from the state (each worker's `login`) and kept in step by the engine as it emits
//! registrations and losses, so a registration is judged without scanning every worker. Soft:
//! never journaled, rebuilt from the state by [`LoginCounts::of`].
//!
//! Invariant (checked after every step in the tests): each login's count is the number of
//! registered workers with that login, and a login with none has no entry.

use std::collections::BTreeMap;

use jetwork_shared::Login;

use super::State;

/// Registered workers by login.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoginCounts {
    by_login: BTreeMap<Login, u32>,
}

impl LoginCounts {
    /// The counts of `state`.
    pub fn of(state: &State) -> Self {
        let mut counts = LoginCounts::default();
        for login in state.workers.values().filter_map(|w| w.login.as_ref()) {
            counts.add(Some(login));
        }
        counts
    }

    /// A worker registered under `login` (none: nothing to count).
    pub fn add(&mut self, login: Option<&Login>) {
        if let Some(login) = login {
            *self.by_login.entry(login.clone()).or_default() += 1;
        }
    }

    /// A worker registered under `login` is gone (or re-registered).
    pub fn remove(&mut self, login: Option<&Login>) {
        let Some(login) = login else { return };
        if let Some(count) = self.by_login.get_mut(login) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.by_login.remove(login);
            }
        }
    }

    /// Workers registered under `login` now.
    pub fn get(&self, login: &Login) -> u32 {
        self.by_login.get(login).copied().unwrap_or(0)
    }

    /// Whether the counts are those of `state`.
    pub fn check(&self, state: &State) -> Result<(), String> {
        let actual = LoginCounts::of(state);
        if *self != actual {
            return Err(format!("login counts {self:?}, but the state has {actual:?}"));
        }
        Ok(())
    }
}
