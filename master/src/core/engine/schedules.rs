//! Recurring schedules: adding and removing them (operators) and firing their ticks (on
//! `Tick`). The engine decides; time is the command's `now`.
//!
//! - A tick is fired by journaling `ScheduleFired` (with the tick's derived work id and a drawn
//!   key), which puts it in `State::unsubmitted`; the runtime then submits it on
//!   `jetwork.internal.<queue>` under the key (`Effect::Submit`) and confirms it stored
//!   (`SubmissionsStored`). A takeover re-submits every tick not confirmed stored: the same
//!   `Nats-Msg-Id` makes a copy that was already stored a duplicate JetStream drops. Intake
//!   takes the tick's submission only while it is pending under that key, and reading it back
//!   ends it, so a copy stored again past the duplicate window is refused. So each tick runs
//!   at most once, whoever leads.
//! - Missed ticks (due while no master led, or while a takeover ran): only the latest of them
//!   is fired, once, as soon as a leader ticks; the others are counted in `missed`. Then the
//!   schedule goes on from the next tick after `now`. A long outage never floods a queue.
//! - Adding a schedule is refused (503) when all schedules together, each at its peak (a
//!   tick's payload and overhead over its shortest gap), would submit more than
//!   `max_schedule_bytes_per_second`: the schedules' output is budgeted, not only their number.
//! - Adding a name that exists is refused (409): remove it first. Removing keeps the ticks it
//!   already fired (they are submitted anyway: a fired tick is a promise).

use bytes::Bytes;
use jetwork_shared::job_options::format_time;
use jetwork_shared::schedules::{tick_work_id, ScheduleName};
use jetwork_shared::QueueName;

use super::super::{schedule, Cadence, Effect, Event, Millis, Reply, RequestId};
use super::Engine;

impl Engine {
    pub(super) fn schedule_add(
        &mut self,
        request: RequestId,
        name: ScheduleName,
        queue: QueueName,
        cadence: Cadence,
        payload: Bytes,
        now: Millis,
    ) {
        if self.state.schedules.contains_key(&name) {
            let why = format!("schedule {name} exists; remove it first (schedule rm {name})");
            return self.error(request, 409, why);
        }
        let policy = &self.policy;
        if self.state.schedules.len() >= policy.max_schedules as usize {
            let why = format!(
                "too many schedules: the limit is {} (master.max_schedules)",
                policy.max_schedules
            );
            return self.error(request, 503, why);
        }
        if payload.len() as u64 > policy.max_schedule_payload {
            let why = format!(
                "payload is {} bytes; the limit is {} (master.max_schedule_payload)",
                payload.len(),
                policy.max_schedule_payload
            );
            return self.error(request, 400, why);
        }
        let Some(next) = cadence.next_after(now) else {
            return self.error(request, 400, format!("schedule {name} would never tick"));
        };
        let min = policy.schedule_min_interval;
        if let Some(gap) = cadence.shortest_gap(now).filter(|gap| *gap < min) {
            let why = format!(
                "schedule {name} would tick every {gap} ms; the shortest interval allowed is \
                 {min} ms (master.schedule_min_interval)"
            );
            return self.error(request, 400, why);
        }
        // The budget is checked against the peaks, as if every schedule ticked at its fastest
        // at once: the stores must take that.
        let adds = schedule::peak_bytes_per_second(&cadence, payload.len() as u64, now);
        let peaks = self.state.schedules.values().map(|s| s.peak_bytes_per_second(now));
        let total = peaks.fold(adds, u64::saturating_add);
        let budget = policy.max_schedule_bytes_per_second;
        if total > budget {
            let why = format!(
                "schedule {name} would bring what all schedules submit at their peak to \
                 {total} bytes/s (each tick's payload + {} bytes over its shortest gap); the \
                 limit is {budget} (master.max_schedule_bytes_per_second): tick less often, \
                 submit less, or remove a schedule",
                schedule::TICK_OVERHEAD
            );
            return self.error(request, 503, why);
        }
        let message = format!("schedule {name} added: first tick at {}", format_time(next));
        self.emit(Event::ScheduleAdded { name, queue, cadence, payload, next, at: now });
        self.reply(request, Reply::Done { message });
    }

    pub(super) fn schedule_remove(&mut self, request: RequestId, name: ScheduleName, now: Millis) {
        if !self.state.schedules.contains_key(&name) {
            return self.error(request, 404, format!("no schedule named {name}"));
        }
        let message = format!("schedule {name} removed");
        self.emit(Event::ScheduleRemoved { name, at: now });
        self.reply(request, Reply::Done { message });
    }

    /// Fires every schedule due at `now` (one tick each: the latest due, see the module docs).
    pub(super) fn fire_schedules(&mut self, now: Millis) {
        let due: Vec<ScheduleName> = self
            .state
            .schedules
            .iter()
            .filter(|(_, s)| s.next <= now)
            .map(|(name, _)| name.clone())
            .collect();
        for name in due {
            let Some(schedule) = self.state.schedules.get(&name) else { continue };
            let (scheduled, missed) = schedule.cadence.latest(schedule.next, now);
            // No tick after this one (a cron date that never comes again): it stays listed,
            // due never.
            let next = schedule.cadence.next_after(now).unwrap_or(Millis::MAX);
            let work_id = tick_work_id(&name, scheduled);
            let key = self.submission_key(&work_id);
            self.emit(Event::ScheduleFired {
                name,
                work_id: work_id.clone(),
                scheduled,
                missed,
                next,
                at: now,
                key,
            });
            self.out.effects.push(Effect::Submit { work_id });
        }
    }
}
