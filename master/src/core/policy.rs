//! [`Policy`]: the tunables the engine decides with. They shape future decisions only; every
//! decision's outcome (deadlines, attempt numbers) is written into the events, so replay does
//! not depend on the policy in force when the journal was written.

use super::Millis;

/// Timings and limits for the engine.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// How long an attempt may go without a result or progress before it is re-queued.
    pub work_timeout: Millis,
    /// How long a worker may go unheard before it is forgotten and its work re-queued.
    pub worker_timeout: Millis,
    /// Hand-outs per work item before it ends as `failed`.
    pub max_attempts: u32,
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
    /// A worker's liveness is journaled at most this often (heartbeats in between only
    /// matter if the worker goes silent, and `worker_timeout` is much longer).
    pub seen_resolution: Millis,
    /// How long before an unanswered "work ready" notification is sent again.
    pub notify_interval: Millis,
    /// Longest a request for work is held open waiting for work (its `wait_ms` is capped).
    pub max_request_wait: Millis,
    /// At a takeover, attempts already past (or near) their deadline get until now + this:
    /// their workers re-send results they could not deliver while no master led, and
    /// re-queueing them at once would only run them again.
    pub takeover_grace: Millis,
}

/// Room kept in a NATS message for headers and framing around a result or a grant.
const HEADROOM: u64 = 64 * 1024;

impl Policy {
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
            max_grant: 256,
            max_grant_bytes: 768 * 1024,
            max_result: 512 * 1024,
            max_capacity: 10_000,
            max_queues_per_worker: 64,
            max_workers: 10_000,
            max_served_queues: 1_000,
            seen_resolution: 1_000,
            notify_interval: 1_000,
            max_request_wait: 30_000,
            takeover_grace: 3_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
