//! [`FastMap`] and [`FastSet`]: the hash map and set of the leader's and the worker's per-job
//! paths (publications awaiting their acknowledgement, payloads read ahead, grants per worker).
//!
//! std's SipHash was about a twentieth of the leader's instructions per job, a few dozen keys
//! hashed for each. foldhash is several times faster on short keys and is seeded at random per
//! map, as std's is: the keys are work ids and worker ids that clients choose, so no one can
//! make them collide on purpose, and nothing may depend on the order of iteration (which is
//! as arbitrary as std's).

use std::collections::{HashMap, HashSet};

/// A hash map with foldhash's randomly seeded hasher. Make one with `FastMap::default()`.
pub type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// A hash set with foldhash's randomly seeded hasher. Make one with `FastSet::default()`.
pub type FastSet<T> = HashSet<T, foldhash::fast::RandomState>;
