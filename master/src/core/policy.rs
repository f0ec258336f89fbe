//! [`Policy`]: the tunables the engine decides with. They shape future decisions only; every
//! decision's outcome (deadlines, attempt numbers) is written into the events, so replay does
//! not depend on the policy in force when the journal was written.

use std::collections::{BTreeMap, BTreeSet};

use jetwork_shared::{Login, QueueName};

use super::Millis;

/// Timings and limits for the engine.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// How long an attempt may go without a result or progress before it is re-queued
    /// (a queue's `queues` entry may say otherwise).
    pub work_timeout: Millis,
    /// How long a worker may go unheard before it is forgotten and its work re-queued.
    pub worker_timeout: Millis,
    /// Hand-outs per work item before it ends as `failed` (a queue's entry may say otherwise).
    pub max_attempts: u32,
    /// The wait before a failed item's next attempt (a queue's entry may say otherwise).
    pub backoff: Backoff,
    /// Per-queue retry rules, over the defaults above.
    pub queues: BTreeMap<QueueName, QueueRules>,
    /// Most items in one grant.
    pub max_grant: u32,
    /// Most payload bytes in one grant (keeps replies under NATS `max_payload`).
    pub max_grant_bytes: u64,
    /// Largest result accepted; a larger one fails its attempt.
    pub max_result: u64,
    /// Largest capacity a worker may declare.
    pub max_capacity: u32,
    /// Most queues one worker may serve (each served queue costs the master a reader).
    pub max_queues_per_worker: u32,
    /// Most workers registered at once; a new one beyond it is refused.
    pub max_workers: u32,
    /// Most distinct queues served at once (each costs the leader a reader and a consumer);
    /// a registration that would go beyond it is refused.
    pub max_served_queues: u32,
    /// How long before an unanswered "work ready" notification is sent again.
    pub notify_interval: Millis,
    /// Longest a request for work is held open waiting for work (its `wait_ms` is capped).
    pub max_request_wait: Millis,
    /// At a takeover, attempts already past (or near) their deadline get until now + this:
    /// their workers re-send results they could not deliver while no master led, and
    /// re-queueing them at once would only run them again.
    pub takeover_grace: Millis,
    /// Most recurring schedules at once; adding one more is refused (503).
    pub max_schedules: u32,
    /// Largest payload a schedule may submit with each tick.
    pub max_schedule_payload: u64,
    /// Shortest gap allowed between two ticks of a schedule.
    pub schedule_min_interval: Millis,
    /// Most bytes per second all schedules together may submit at their peak (see
    /// [`Schedule::peak_bytes_per_second`](super::Schedule::peak_bytes_per_second)).
    pub max_schedule_bytes_per_second: u64,
    /// Most priority submissions of one queue taken out of turn (ahead of its unread
    /// backlog) that its reader has not reached yet, and most expiring ones taken out of turn
    /// in all the queues nobody serves; 0 turns jumps off.
    pub max_priority_jumps: u32,
    /// The logins workers may register under, each with its rules. Empty: any login, and
    /// workers without one (the endpoints without a login token); otherwise only these, and
    /// every worker must register under one.
    pub logins: BTreeMap<Login, LoginRules>,
    /// Most workers registered under one login at once (a login's rules may say otherwise).
    pub max_workers_per_login: u32,
    /// Most attempts one worker holds at once, whatever capacity it declares (a login's rules
    /// may say otherwise).
    pub max_slots_per_worker: u32,
    /// The attempts a worker may hold at first: its window grows by one with each outcome of
    /// its that is accepted and halves when one of its attempts misses its deadline, so a
    /// worker that claims slots it does not work through holds few of them.
    pub initial_window: u32,
    /// Most items of one queue waiting out a delay or a back-off: at the limit the queue is
    /// not read ([`Engine::may_read`](super::Engine::may_read)).
    pub max_waiting_per_queue: u64,
    /// Most items waiting in all queues: at the limit no queue is read.
    pub max_waiting: u64,
}

/// Room kept in a NATS message for headers and framing around a result or a grant.
const HEADROOM: u64 = 64 * 1024;

/// How long a failed item waits before it is handed out again: `initial` after the first
/// failure, multiplied by `factor` after each further one, never more than `max` (or
/// `initial`, if larger). With `jitter`, the wait is drawn between half of that and all of
/// it, so items that failed together (a dependency was down) do not all come back at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub initial: Millis,
    pub factor: f64,
    pub max: Millis,
    pub jitter: bool,
}

impl Backoff {
    /// No wait at all: a failed item is handed out again at once.
    pub const NONE: Backoff = Backoff { initial: 0, factor: 1.0, max: 0, jitter: false };

    /// The longest wait after `failures` failed attempts (1 for the first), before jitter.
    pub fn ceiling(&self, failures: u32) -> Millis {
        let exponent = i32::try_from(failures.saturating_sub(1)).unwrap_or(i32::MAX);
        let grown = self.initial as f64 * self.factor.max(1.0).powi(exponent);
        // `as` saturates on overflow and infinity, which `min` then caps (a cap below the
        // first wait means the first wait).
        (grown as Millis).min(self.max.max(self.initial))
    }

    /// The wait after `failures` failed attempts; `draw` is a uniformly random number, used
    /// only with jitter (the engine passes one from its generator and journals the result).
    pub fn delay(&self, failures: u32, draw: u64) -> Millis {
        let ceiling = self.ceiling(failures);
        if !self.jitter || ceiling < 2 {
            return ceiling;
        }
        let half = ceiling / 2;
        half + draw % (ceiling - half + 1)
    }
}

/// A queue's own rules; what is not set comes from the policy's defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct QueueRules {
    pub max_attempts: Option<u32>,
    pub work_timeout: Option<Millis>,
    pub backoff: Option<Backoff>,
    /// Most attempts of the queue running at once, across all workers (none: no limit).
    pub concurrency: Option<u32>,
    /// Most attempts of the queue started per second (none: no limit).
    pub rate: Option<u32>,
}

/// What the workers of one login may do; what is not set comes from the policy's defaults.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoginRules {
    /// The queues its workers may serve (`None`: any).
    pub queues: Option<BTreeSet<QueueName>>,
    /// Most of its workers registered at once.
    pub max_workers: Option<u32>,
    /// Most attempts one of its workers holds at once.
    pub max_slots: Option<u32>,
}

/// The retry rules in force for one queue.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rules {
    pub max_attempts: u32,
    pub work_timeout: Millis,
    pub backoff: Backoff,
    pub concurrency: Option<u32>,
    pub rate: Option<u32>,
}

impl Policy {
    /// The retry rules of `queue`: its own where it has them, the defaults elsewhere.
    pub fn rules(&self, queue: &QueueName) -> Rules {
        let own = self.queues.get(queue).copied().unwrap_or_default();
        Rules {
            max_attempts: own.max_attempts.unwrap_or(self.max_attempts),
            work_timeout: own.work_timeout.unwrap_or(self.work_timeout),
            backoff: own.backoff.unwrap_or(self.backoff),
            concurrency: own.concurrency,
            rate: own.rate,
        }
    }

    /// Whether workers must register under a configured login.
    pub fn logins_bound(&self) -> bool {
        !self.logins.is_empty()
    }

    /// Most workers registered under `login` at once.
    pub fn max_workers_of(&self, login: &Login) -> u32 {
        let own = self.logins.get(login).and_then(|rules| rules.max_workers);
        own.unwrap_or(self.max_workers_per_login)
    }

    /// Most attempts a worker of `login` (or of none) holds at once.
    pub fn max_slots_of(&self, login: Option<&Login>) -> u32 {
        let own = login.and_then(|login| self.logins.get(login)).and_then(|rules| rules.max_slots);
        own.unwrap_or(self.max_slots_per_worker)
    }

    /// The policy with its size limits brought within what a server whose messages carry at
    /// most `max_message` bytes can deliver (a result is one message, a grant's payloads one
    /// reply); whether anything had to change.
    pub fn fitted_to(mut self, max_message: u64) -> (Policy, bool) {
        let room = max_message.saturating_sub(HEADROOM);
        let changed = self.max_result > room || self.max_grant_bytes > room;
        self.max_result = self.max_result.min(room);
        self.max_grant_bytes = self.max_grant_bytes.min(room);
        (self, changed)
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            work_timeout: 10_000,
            worker_timeout: 30_000,
            max_attempts: 5,
            backoff: Backoff { initial: 1_000, factor: 2.0, max: 60_000, jitter: true },
            queues: BTreeMap::new(),
            max_grant: 256,
            max_grant_bytes: 768 * 1024,
            max_result: 512 * 1024,
            max_capacity: 10_000,
            max_queues_per_worker: 64,
            max_workers: 10_000,
            max_served_queues: 1_000,
            notify_interval: 1_000,
            max_request_wait: 30_000,
            takeover_grace: 3_000,
            max_schedules: 1_000,
            max_schedule_payload: 64 * 1024,
            schedule_min_interval: 1_000,
            max_schedule_bytes_per_second: 1 << 20,
            max_priority_jumps: 1_000,
            max_waiting_per_queue: 200_000,
            max_waiting: 1_000_000,
            logins: BTreeMap::new(),
            max_workers_per_login: 100,
            max_slots_per_worker: 1_000,
            initial_window: 16,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_by_its_factor_up_to_its_cap() {
        let backoff = Backoff { initial: 1_000, factor: 2.0, max: 10_000, jitter: false };
        let waits: Vec<Millis> = (1..=6).map(|n| backoff.delay(n, 0)).collect();
        assert_eq!(waits, [1_000, 2_000, 4_000, 8_000, 10_000, 10_000]);
        assert_eq!(backoff.delay(u32::MAX, 0), 10_000, "no overflow however many failures");
        assert_eq!(Backoff::NONE.delay(3, 99), 0);
    }

    #[test]
    fn jitter_stays_between_half_and_all_of_the_wait() {
        let backoff = Backoff { initial: 1_000, factor: 3.0, max: 60_000, jitter: true };
        for draw in [0, 1, 500, 501, 1_000, u64::MAX] {
            let wait = backoff.delay(1, draw);
            assert!((500..=1_000).contains(&wait), "{wait}");
        }
        assert_eq!(backoff.delay(1, 0), 500);
        assert_eq!(backoff.delay(1, 500), 1_000);
    }

    #[test]
    fn a_queue_overrides_only_what_it_sets() {
        let emails = QueueName::parse("emails").expect("valid");
        let mut policy = Policy::default();
        policy
            .queues
            .insert(emails.clone(), QueueRules { max_attempts: Some(9), ..Default::default() });
        let rules = policy.rules(&emails);
        assert_eq!((rules.max_attempts, rules.work_timeout), (9, policy.work_timeout));
        assert_eq!(policy.rules(&QueueName::default_queue()).max_attempts, policy.max_attempts);
    }

    #[test]
    fn size_limits_fit_the_server_message_size() {
        let policy =
            Policy { max_result: 512 * 1024, max_grant_bytes: 768 * 1024, ..Policy::default() };
        let (same, changed) = policy.clone().fitted_to(1024 * 1024);
        assert_eq!(
            (same.max_result, same.max_grant_bytes, changed),
            (512 * 1024, 768 * 1024, false)
        );
        let (small, changed) = policy.fitted_to(256 * 1024);
        assert_eq!(
            (small.max_result, small.max_grant_bytes, changed),
            (192 * 1024, 192 * 1024, true)
        );
    }
}
