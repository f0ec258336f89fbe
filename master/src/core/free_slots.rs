//! [`FreeSlots`]: the free slots of the workers serving each queue, and of all workers, kept
//! in step with every change instead of summed over the workers: the readers ask for them
//! after every batch of commands (to read ahead what the workers can take), and with 10,000
//! registered workers a sum per batch was most of what idle workers cost the leader.
//!
//! Derived, never journaled: built from the state (and the engine's grant windows), then
//! moved by the engine for each worker whose free slots an event or a window change changed,
//! once per step and before anything reads them (`Engine::slots_changing`,
//! `Engine::settle_slots`). Invariant (checked by `Engine::check_index` in the golden and
//! property tests): each count equals the sum of `Engine::free_of` over the workers it covers.

use jetwork_shared::fast_hash::FastMap;

use jetwork_shared::QueueName;

/// Free slots by queue served, and in all.
#[derive(Debug, Clone, Default)]
pub struct FreeSlots {
    by_queue: FastMap<QueueName, u64>,
    total: u64,
}

impl FreeSlots {
    /// A worker serving `queues` gained `free` free slots.
    pub fn add(&mut self, queues: &[QueueName], free: u32) {
        if free == 0 {
            return;
        }
        self.total += u64::from(free);
        for queue in queues {
            // No clone of the name for a queue already counted (every hand-out and outcome
            // comes through here twice).
            match self.by_queue.get_mut(queue) {
                Some(count) => *count += u64::from(free),
                None => {
                    self.by_queue.insert(queue.clone(), u64::from(free));
                }
            }
        }
    }

    /// A worker serving `queues` lost `free` free slots.
    pub fn remove(&mut self, queues: &[QueueName], free: u32) {
        if free == 0 {
            return;
        }
        self.total = self.total.saturating_sub(u64::from(free));
        for queue in queues {
            if let Some(count) = self.by_queue.get_mut(queue) {
                *count = count.saturating_sub(u64::from(free));
            }
        }
    }

    /// A worker serving `queues` had `before` free slots and has `after`: the same as
    /// [`remove`](Self::remove) then [`add`](Self::add), with one look-up per queue.
    pub fn change(&mut self, queues: &[QueueName], before: u32, after: u32) {
        if before == 0 || after == 0 {
            self.remove(queues, before);
            self.add(queues, after);
            return;
        }
        let (before, after) = (u64::from(before), u64::from(after));
        self.total = (self.total + after).saturating_sub(before);
        for queue in queues {
            if let Some(count) = self.by_queue.get_mut(queue) {
                *count = (*count + after).saturating_sub(before);
            }
        }
    }

    /// Forgets `queue`, which nobody serves any more (its count is 0).
    pub fn forget(&mut self, queue: &QueueName) {
        self.by_queue.remove(queue);
    }

    /// Whether both hold the same counts (a queue counted 0 is the same as one not counted).
    pub fn same_as(&self, other: &FreeSlots) -> bool {
        let covers = |a: &FreeSlots, b: &FreeSlots| {
            a.by_queue.iter().all(|(queue, count)| b.get(queue) == *count)
        };
        self.total == other.total && covers(self, other) && covers(other, self)
    }

    /// Free slots of the workers serving `queue`.
    pub fn get(&self, queue: &QueueName) -> u64 {
        self.by_queue.get(queue).copied().unwrap_or(0)
    }

    /// Free slots of all workers.
    pub fn total(&self) -> u64 {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_what_workers_gain_and_lose() {
        let (a, b) = (QueueName::parse("a").unwrap(), QueueName::parse("b").unwrap());
        let mut free = FreeSlots::default();
        free.add(&[a.clone(), b.clone()], 4);
        free.add(std::slice::from_ref(&a), 2);
        assert_eq!((free.get(&a), free.get(&b), free.total()), (6, 4, 6));
        free.remove(&[a.clone(), b.clone()], 4);
        assert_eq!((free.get(&a), free.get(&b), free.total()), (2, 0, 2));
        let mut expected = FreeSlots::default();
        expected.add(std::slice::from_ref(&a), 2);
        assert!(free.same_as(&expected), "b at 0 is b not counted");
        free.change(std::slice::from_ref(&a), 2, 5);
        assert_eq!((free.get(&a), free.total()), (5, 5));
        free.change(std::slice::from_ref(&a), 5, 2);
        free.forget(&b);
        expected.add(&[b], 1);
        assert!(!free.same_as(&expected));
    }
}
