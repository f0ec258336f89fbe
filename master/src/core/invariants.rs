//! The state's structural invariants, checked by the tests after every step (see the list in
//! `state.rs`): a broken one means an `apply` or an engine rule is wrong, never bad input.

use std::collections::BTreeSet;

use super::{PublicationKey, State};

impl State {
    /// Verifies the invariants in the module docs; used by tests after every step.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut seen_ready = BTreeSet::new();
        for (name, q) in &self.queues {
            if q.prioritized.iter().any(|(p, lane)| lane.is_empty() || *p == 0 || *p > 9) {
                return Err(format!("{name} has an empty or out-of-range priority lane"));
            }
            if q.jumped.first().is_some_and(|seq| *seq <= q.cursor) {
                return Err(format!("{name} lists a jumped submission at or below its cursor"));
            }
            if let Some((id, seq)) =
                q.jumped_ids.iter().find(|(_, seq)| **seq <= q.cursor || !q.jumped.contains(seq))
            {
                return Err(format!("{name} lists {id} as taken out of turn at {seq}, not jumped"));
            }
            for (priority, id) in
                q.ready.iter().map(|id| (0, id)).chain(
                    q.prioritized.iter().flat_map(|(p, lane)| lane.iter().map(|id| (*p, id))),
                )
            {
                let work =
                    self.work.get(id).ok_or(format!("ready {id} in {name} is not in work"))?;
                if work.running.is_some() {
                    return Err(format!("{id} is both ready and running"));
                }
                if &work.queue != name {
                    return Err(format!("{id} is ready in {name} but belongs to {}", work.queue));
                }
                if work.options.priority != priority {
                    return Err(format!("{id} is ready at priority {priority}, not its own"));
                }
                if !seen_ready.insert(id.clone()) {
                    return Err(format!("{id} is ready twice"));
                }
            }
        }
        if let Some(id) = self.retries.keys().find(|id| self.unsubmitted.contains_key(*id)) {
            return Err(format!("{id} has a pending tick and a pending retry"));
        }
        if let Some(id) = self.retries.keys().find(|id| self.work.contains_key(*id)) {
            return Err(format!("{id} has a pending retry while in flight"));
        }
        let mut running = 0;
        let mut waiting = 0;
        for (id, work) in &self.work {
            if let Some(until) = work.waiting_until {
                waiting += 1;
                if work.running.is_some() || seen_ready.contains(id) {
                    return Err(format!("{id} is waiting and also ready or running"));
                }
                if !self.waiting.contains(&(until, id.clone())) {
                    return Err(format!("{id} waits without its time indexed"));
                }
                continue;
            }
            match &work.running {
                None if !seen_ready.contains(id) => {
                    return Err(format!("{id} is neither ready, waiting nor running"))
                }
                None => {}
                Some(r) => {
                    running += 1;
                    if !self.deadlines.contains(&(r.deadline, id.clone())) {
                        return Err(format!("{id} runs without its deadline indexed"));
                    }
                    let worker = self
                        .workers
                        .get(&r.worker)
                        .ok_or(format!("{id} runs on unknown worker {}", r.worker))?;
                    if !worker.running.contains(id) {
                        return Err(format!("{id} is not listed on its worker {}", r.worker));
                    }
                }
            }
            if self.unpublished.contains_key(&PublicationKey::Result(id.clone())) {
                return Err(format!("{id} is both in flight and finished"));
            }
        }
        let expiring = self.work.values().filter(|w| w.options.expires > 0).count();
        if self.expiring.len() != expiring
            || self
                .expiring
                .iter()
                .any(|(at, id)| self.work.get(id).map(|w| w.options.expires) != Some(*at))
        {
            return Err(format!(
                "{} expiry entries for {expiring} items with an expiry",
                self.expiring.len()
            ));
        }
        if self.waiting.len() != waiting {
            return Err(format!(
                "{} waiting entries for {waiting} waiting items",
                self.waiting.len()
            ));
        }
        if self.deadlines.len() != running {
            return Err(format!("{} deadlines for {running} running items", self.deadlines.len()));
        }
        for (wid, w) in &self.workers {
            for id in &w.running {
                let on = self.work.get(id).and_then(|w| w.running.as_ref()).map(|r| &r.worker);
                if on != Some(wid) {
                    return Err(format!("worker {wid} lists {id}, which runs on {on:?}"));
                }
            }
        }
        Ok(())
    }
}
