//! Workers coming and going: registration (with its session and limits), heartbeats,
//! deregistration (a worker that stops cleanly releases its id at once), and forgetting a
//! worker that went silent.
//!
//! A worker id belongs to one process (its session) while that process lives: a
//! registration under a live worker's id from another session (or another login) is refused
//! and records nothing; once the holder has been silent past `worker_timeout`, the id is free
//! again and the old holder is lost first (its attempts re-queued). Limits (capacity, queues
//! per worker, workers, workers per login, distinct queues served) are checked before anything
//! is recorded.
//!
//! Logins: a registration that came on `jetwork.master.register.<login>.<worker id>` is the
//! login's (NATS permissions let only the login's user publish there). Its worker id must be
//! one of the login's (`<login>` or `<login>-…`), so no login can take another's ids; when
//! the policy names logins, only those may register, each only for the queues it allows, and
//! a registration without a login is refused.

use jetwork_shared::protocol::{Deregister, Deregistered, RegisterWorker, Registered};
use jetwork_shared::{Login, QueueName, WorkId, WorkerId};

use super::super::{Event, Millis, Reply, RequestId};
use super::outcomes::Retry;
use super::{wrong_login, wrong_session, Engine};

impl Engine {
    /// A registration or heartbeat. Every limit is checked before anything is recorded, so a
    /// refused registration leaves no trace; an unchanged one only counts as "seen".
    pub(super) fn register(
        &mut self,
        request: RequestId,
        msg: RegisterWorker,
        login: Option<Login>,
        now: Millis,
    ) {
        if msg.capacity == 0 || msg.capacity > self.policy.max_capacity {
            let max = self.policy.max_capacity;
            return self.error(
                request,
                400,
                format!("capacity must be 1..={max}, not {}", msg.capacity),
            );
        }
        // Order and repeats do not matter to the worker; comparing with the recorded list (to
        // journal only changes) needs them normalised.
        let mut queues = msg.queues;
        queues.sort();
        queues.dedup();
        let max_queues = self.policy.max_queues_per_worker as usize;
        if queues.is_empty() || queues.len() > max_queues {
            let message = format!("a worker must serve 1 to {max_queues} queues");
            return self.error(request, 400, message);
        }
        let worker = msg.worker_id;
        let session = msg.session;
        if let Err((code, message)) = self.login_allows(login.as_ref(), &worker, &queues) {
            return self.error(request, code, message);
        }
        // A worker id is its process's while that process lives: another session under it is
        // an impostor or a restart, and the two cannot be told apart until the first one has
        // been silent long enough to be lost anyway.
        if let Some(existing) = self.state.workers.get(&worker) {
            if existing.session != session || existing.login != login {
                let heard = self.last_heard(&worker, existing);
                if now < heard.saturating_add(self.policy.worker_timeout) {
                    let message = format!(
                        "worker id {worker} is in use by another live worker process (a new \
                         process may take it once that one has been silent for {} ms)",
                        self.policy.worker_timeout
                    );
                    return self.error(request, 409, message);
                }
                // The old process is gone (silent past the timeout): the id is free again.
                self.lose_worker(&worker, now);
            }
        }
        if !self.state.workers.contains_key(&worker) {
            if self.state.workers.len() >= self.policy.max_workers as usize {
                let max = self.policy.max_workers;
                return self.error(
                    request,
                    503,
                    format!("the master serves at most {max} workers"),
                );
            }
            if let Some(login) = &login {
                let max = self.policy.max_workers_of(login);
                if self.logins.get(login) >= max {
                    let message = format!(
                        "the master registers at most {max} workers of login {login} at once \
                         (master.max_workers_per_login, or max_workers in [logins.{login}])"
                    );
                    return self.error(request, 503, message);
                }
            }
        }
        let changed = match self.state.workers.get(&worker) {
            None => true,
            Some(w) => w.queues != queues || w.capacity != msg.capacity || w.login != login,
        };
        // Only a change of queues can change what is served (heartbeats skip the count).
        let max_served = self.policy.max_served_queues as usize;
        if changed && self.serving.served_after(&worker, &queues) > max_served {
            let max = self.policy.max_served_queues;
            let message = format!("the master serves at most {max} distinct queues");
            return self.error(request, 503, message);
        }
        if changed {
            self.emit(Event::WorkerRegistered {
                worker: worker.clone(),
                session,
                login,
                queues: queues.clone(),
                capacity: msg.capacity,
                at: now,
            });
        } else {
            self.touch(&worker, now);
        }
        // What the worker holds that is no longer its own (timed out and handed out again, or
        // finished): it stops running those. Results it already has may still be reported.
        let revoked = msg
            .running
            .into_iter()
            .filter(|held| !self.is_current(&worker, &held.work_id, held.attempt))
            .collect();
        let free = self.state.workers.get(&worker).map_or(0, |w| self.free_of(&worker, w));
        let work_ready = free > 0 && queues.iter().any(|q| self.state.ready_len(q) > 0);
        let epoch = self.state.epoch;
        self.reply(request, Reply::Registered(Registered { epoch, revoked, work_ready }));
    }

    /// Whether a worker registering as `worker` under `login` (on the endpoint with it) may
    /// serve `queues`; if not, the error code and the reason.
    fn login_allows(
        &self,
        login: Option<&Login>,
        worker: &WorkerId,
        queues: &[QueueName],
    ) -> Result<(), (u16, String)> {
        let Some(login) = login else {
            if self.policy.logins_bound() {
                return Err((
                    403,
                    "this master binds workers to their logins: register on \
                     jetwork.master.register.<login>.<worker id> as the login's NATS user \
                     (docs/security.md, \"Worker logins\")"
                        .to_owned(),
                ));
            }
            return Ok(());
        };
        if !login.owns(worker) {
            let message = format!(
                "worker id {worker} is not one of login {login}'s: its worker ids are {login} \
                 and {login}-…"
            );
            return Err((403, message));
        }
        if !self.policy.logins_bound() {
            return Ok(());
        }
        let Some(rules) = self.policy.logins.get(login) else {
            let message = format!(
                "login {login} may not run workers: the master's configuration has no \
                 [logins.{login}]"
            );
            return Err((403, message));
        };
        if let Some(allowed) = &rules.queues {
            let refused: Vec<&str> =
                queues.iter().filter(|q| !allowed.contains(*q)).map(QueueName::as_str).collect();
            if !refused.is_empty() {
                let allowed: Vec<&str> = allowed.iter().map(QueueName::as_str).collect();
                let message = format!(
                    "login {login} may not serve {} (it may serve: {})",
                    refused.join(", "),
                    allowed.join(", ")
                );
                return Err((403, message));
            }
        }
        Ok(())
    }

    /// A known worker was heard from (a registration, a request, a report): it is alive.
    /// Not journaled (see `liveness.rs`): only losing a worker is a decision.
    pub(super) fn touch(&mut self, worker: &WorkerId, now: Millis) {
        if self.state.workers.contains_key(worker) {
            self.liveness.heard(worker, now);
        }
    }

    /// A worker that stops cleanly releases its id: what it still holds is re-queued at once
    /// and the id is free for the next process. Only the id's own session, under its own
    /// login, may: anyone else is refused (403) and nothing changes. Journaled as the
    /// `WorkerLost` its silence would have led to later, so replay needs nothing new.
    pub(super) fn deregister(
        &mut self,
        request: RequestId,
        msg: Deregister,
        login: Option<Login>,
        now: Millis,
    ) {
        let worker = msg.worker_id;
        let Some(w) = self.state.workers.get(&worker) else {
            // Already released (a re-sent request whose first reply was lost), lost, or never
            // registered: the id is free either way.
            let message = format!("worker {worker} is not registered: its id is free");
            return self.error(request, 404, message);
        };
        if w.session != msg.session {
            return self.error(request, 403, wrong_session(&worker));
        }
        if w.login != login {
            return self.error(request, 403, wrong_login(&worker, w, login.as_ref()));
        }
        let requeued = u32::try_from(w.running.len()).unwrap_or(u32::MAX);
        let reason = format!("worker {worker} deregistered: it stopped");
        self.drop_worker(&worker, reason, now);
        let epoch = self.state.epoch;
        self.reply(request, Reply::Deregistered(Deregistered { epoch, requeued }));
    }

    /// Forgets a worker that has been silent too long, re-queueing what it was running.
    pub(super) fn lose_worker(&mut self, worker: &WorkerId, now: Millis) {
        let Some(w) = self.state.workers.get(worker) else { return };
        let reason = format!(
            "worker {worker} lost: not heard from for {} ms",
            now.saturating_sub(self.last_heard(worker, w))
        );
        self.drop_worker(worker, reason, now);
    }

    /// Forgets a worker for `reason`, re-queueing at once what it was running.
    fn drop_worker(&mut self, worker: &WorkerId, reason: String, now: Millis) {
        let Some(w) = self.state.workers.get(worker) else { return };
        // Its attempts end before it goes: a running attempt always names a known worker.
        let running: Vec<WorkId> = w.running.iter().cloned().collect();
        for work_id in self.newest_first(running) {
            self.end_attempt(&work_id, reason.clone(), now, Retry::Now);
        }
        self.notice_over(worker);
        // A request it left open is answered now (empty): whoever takes the id next must not
        // see work handed out on it.
        if let Some(parked) = self.unhold(worker) {
            self.reply_to_worker(parked.request, Reply::Grant { assignments: Vec::new() }, false);
        }
        self.emit(Event::WorkerLost { worker: worker.clone(), reason, at: now });
    }
}
