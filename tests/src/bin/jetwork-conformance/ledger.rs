//! [`Ledger`]: what the fake master handed the worker under test, what it told it since, and
//! the rules every message of the worker is held to, whatever the case:
//! - an outcome names an attempt handed out in a reply the worker had to believe (an attempt
//!   from a stale or unconfirmed reply was never its to run), with that attempt's token;
//! - a `completed` result is the job's payload (the handler contract, see `main.rs`);
//! - nothing is said about an attempt once it ended here (a verdict on its completion or
//!   failure, a revoke, a `superseded` verdict): re-sends that crossed the ending are allowed
//!   for [`CROSSING`];
//! - slots: what a request or report asks for, plus what the worker holds, never exceeds its
//!   capacity.
//!
//! Pure bookkeeping: the caller stamps every call with the moment it arrived.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use jetwork_shared::protocol::{Assignment, Outcome, OutcomeStatus};
use jetwork_shared::Token;

/// How long after an attempt ended here a message about it may still be one that crossed the
/// news on the wire.
pub const CROSSING: Duration = Duration::from_millis(700);

/// An attempt, as the worker names it.
pub type Key = (String, u32);

/// One hand-out.
#[derive(Debug, Clone)]
struct Granted {
    token: Token,
    payload: Bytes,
    /// Handed out in a reply the worker had to believe; otherwise `why_not` says why not.
    believable: Result<(), String>,
    /// When and why it stopped being the worker's (verdict, revoke, superseded).
    ended: Option<(Instant, String)>,
}

/// Every hand-out of one case, and the rules broken so far.
#[derive(Debug, Default)]
pub struct Ledger {
    capacity: u32,
    granted: HashMap<Key, Granted>,
    violations: Vec<String>,
}

impl Ledger {
    /// The worker registered with this capacity.
    pub fn set_capacity(&mut self, capacity: u32) {
        self.capacity = capacity;
    }

    /// The capacity the worker registered with.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// `assignment` went out in a reply the worker had to believe (`Ok`) or to ignore
    /// (`Err(why)`).
    pub fn granted(&mut self, assignment: &Assignment, believable: Result<(), String>) {
        let key = (assignment.work_id.to_string(), assignment.attempt);
        self.granted.insert(
            key,
            Granted {
                token: assignment.token,
                payload: assignment.payload.clone(),
                believable,
                ended: None,
            },
        );
    }

    /// The attempt is no longer the worker's, from `at`.
    pub fn ended(&mut self, key: &Key, at: Instant, why: &str) {
        if let Some(g) = self.granted.get_mut(key) {
            g.ended.get_or_insert((at, why.to_owned()));
        }
    }

    /// Whether any attempt of `work_id` has been handed out.
    pub fn handed_out(&self, work_id: &str) -> bool {
        self.granted.keys().any(|(id, _)| id == work_id)
    }

    /// Everything the worker held is no longer its, from `at`.
    pub fn end_all(&mut self, at: Instant, why: &str) {
        for g in self.granted.values_mut() {
            g.ended.get_or_insert((at, why.to_owned()));
        }
    }

    /// Attempts the worker holds as far as this master knows: believable and not ended.
    pub fn held(&self) -> u32 {
        let held = self.granted.values().filter(|g| g.believable.is_ok() && g.ended.is_none());
        u32::try_from(held.count()).unwrap_or(u32::MAX)
    }

    /// Checks one outcome that arrived at `at`.
    pub fn outcome(&mut self, outcome: &Outcome, at: Instant) {
        let key = (outcome.work_id.to_string(), outcome.attempt);
        let name = format!("{}@{}", key.0, key.1);
        let Some(g) = self.granted.get(&key) else {
            self.violations.push(format!("an outcome about {name}, which was never handed out"));
            return;
        };
        let broken = if let Err(why) = &g.believable {
            Some(format!("ran {name}, handed out in a reply it had to ignore ({why})"))
        } else if g.token != outcome.token {
            Some(format!("the outcome about {name} carries another token than its assignment's"))
        } else if outcome.status == OutcomeStatus::Completed && outcome.result != g.payload {
            Some(format!(
                "the result of {name} is {:?}, not what the handler returned ({:?})",
                String::from_utf8_lossy(&outcome.result),
                String::from_utf8_lossy(&g.payload)
            ))
        } else {
            match &g.ended {
                Some((when, why)) if at.duration_since(*when) > CROSSING => Some(format!(
                    "a {:?} outcome about {name} {} ms after it ended ({why})",
                    outcome.status,
                    at.duration_since(*when).as_millis()
                )),
                _ => None,
            }
        };
        self.violations.extend(broken);
    }

    /// Checks that asking for `slots` more, while `also_asked` are asked in a request still
    /// open here and `freeing` of the held ones ride along as finished outcomes, fits.
    pub fn asks(&mut self, what: &str, slots: u32, also_asked: u32, freeing: u32) {
        let held = self.held().saturating_sub(freeing);
        if slots + also_asked + held > self.capacity {
            self.violations.push(format!(
                "a {what} asks for {slots} slots while it holds {held} (as the master counts) and \
                 {also_asked} are asked in an open request: over its capacity of {}",
                self.capacity
            ));
        }
    }

    /// Records a broken rule found elsewhere.
    pub fn violated(&mut self, what: String) {
        self.violations.push(what);
    }

    /// The rules broken so far.
    pub fn violations(&self) -> &[String] {
        &self.violations
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jetwork_shared::{QueueName, WorkId};

    fn assignment(id: &str, payload: &'static [u8]) -> Assignment {
        Assignment {
            work_id: WorkId::parse(id).unwrap(),
            queue: QueueName::parse("q").unwrap(),
            attempt: 1,
            deadline_ms: 0,
            timeout_ms: 1000,
            payload: Bytes::from_static(payload),
            token: Token::from_u128(7),
        }
    }

    fn completed(a: &Assignment, token: Token, result: &'static [u8]) -> Outcome {
        Outcome {
            work_id: a.work_id.clone(),
            attempt: a.attempt,
            token,
            status: OutcomeStatus::Completed,
            result: Bytes::from_static(result),
            reason: None,
            non_retryable: false,
        }
    }

    #[test]
    fn each_rule_is_told_apart() {
        let now = Instant::now();
        let mut ledger = Ledger::default();
        ledger.set_capacity(2);
        let a = assignment("a", b"0 a");
        ledger.granted(&a, Ok(()));
        ledger.outcome(&completed(&a, a.token, b"0 a"), now);
        assert!(ledger.violations().is_empty());
        ledger.outcome(&completed(&a, Token::from_u128(8), b"0 a"), now);
        ledger.outcome(&completed(&a, a.token, b"other"), now);
        let stale = assignment("s", b"0 s");
        ledger.granted(&stale, Err("epoch 4, older than 5".into()));
        ledger.outcome(&completed(&stale, stale.token, b"0 s"), now);
        ledger.ended(&(String::from("a"), 1), now, "accepted");
        ledger.outcome(&completed(&a, a.token, b"0 a"), now + CROSSING / 2);
        ledger.outcome(&completed(&a, a.token, b"0 a"), now + CROSSING * 2);
        ledger.asks("request", 3, 0, 0);
        let v = ledger.violations();
        assert_eq!(v.len(), 5, "{v:?}");
        assert!(v[0].contains("another token"));
        assert!(v[1].contains("not what the handler returned"));
        assert!(v[2].contains("had to ignore"));
        assert!(v[3].contains("after it ended (accepted)"));
        assert!(v[4].contains("over its capacity of 2"));
    }
}
