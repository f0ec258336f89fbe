//! [`Login`]: the name a group of workers logs in under, bound to a NATS user by the subjects
//! that user may publish to (`jetwork.master.<endpoint>.<login>.<worker id>`). The master never
//! learns a message's NATS user; what binds a worker to its login is that the server lets user
//! `worker-1` publish only under `jetwork.master.*.worker-1.*` (`nats.conf`), so the login in
//! a subject the master receives is the sender's.
//!
//! Invariants: 1 to 64 characters of `[A-Za-z0-9_-]`; a login owns exactly the worker ids
//! that are its name or begin with its name and `-` ([`Login::owns`]), so the ids of two logins
//! never meet unless one login's name is the other's followed by `-…` (the master refuses such
//! a configuration).

use crate::name::{self, validated_name, InvalidName};
use crate::WorkerId;

validated_name!(
    /// A validated worker login.
    Login,
    "login",
    64
);

impl Login {
    /// Validates a login.
    pub fn parse(value: &str) -> Result<Self, InvalidName> {
        name::check("login", value, Self::MAX_LEN)?;
        Ok(Login::checked(value))
    }

    /// Whether `worker` is one of this login's ids: the login itself, or `<login>-…`.
    pub fn owns(&self, worker: &WorkerId) -> bool {
        extends(worker.as_str(), &self.text)
    }

    /// Whether an id could belong to both logins (one's name is the other's followed by `-…`).
    pub fn overlaps(&self, other: &Login) -> bool {
        extends(&self.text, &other.text) || extends(&other.text, &self.text)
    }

    /// A fresh random worker id of this login (`<login>-<uuid v4 simple>`).
    pub fn random_worker_id(&self) -> WorkerId {
        let id = format!("{}-{}", self.text, uuid::Uuid::new_v4().simple());
        WorkerId::parse(&id).unwrap_or_else(|_| WorkerId::random())
    }
}

/// Whether `name` is `prefix` or `prefix` followed by `-…`.
fn extends(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> WorkerId {
        WorkerId::parse(s).unwrap()
    }

    #[test]
    fn a_login_owns_its_name_and_the_ids_it_prefixes_with_a_dash() {
        let login = Login::parse("worker-1").unwrap();
        assert!(login.owns(&id("worker-1")));
        assert!(login.owns(&id("worker-1-a")));
        assert!(login.owns(&login.random_worker_id()));
        assert!(!login.owns(&id("worker-10")), "not a longer name");
        assert!(!login.owns(&id("worker")));
        assert!(!login.owns(&id("worker-2")));
        assert!(!login.owns(&id("worker-1_a")));
    }

    #[test]
    fn logins_overlap_when_one_extends_the_other_with_a_dash() {
        let l = |s| Login::parse(s).unwrap();
        assert!(l("worker").overlaps(&l("worker-1")));
        assert!(l("worker-1").overlaps(&l("worker")));
        assert!(l("a").overlaps(&l("a")));
        assert!(!l("worker-1").overlaps(&l("worker-2")));
        assert!(!l("worker-1").overlaps(&l("worker-10")));
    }
}
