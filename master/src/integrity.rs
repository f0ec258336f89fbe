//! Watching the streams for what only something other than this leader could have done: a
//! write into the journal, history purged past the latest snapshot, a stream's settings
//! changed. NATS permissions are what prevent these (see `nats.conf`); this is what notices
//! when they were not in place, or an operator with full rights did it, so the leader reacts
//! within a second instead of at its next write (or never).
//!
//! The leader asks for an [`Observation`] every second, off its loop, and acts on it:
//! - the journal's last sequence past everything it has written: a foreign write; it steps
//!   down at once (its next write would be refused anyway) and the next term leaves the
//!   foreign message out of the replay;
//! - the journal's first sequence past its latest snapshot: history was purged by someone
//!   else; it writes a new snapshot at once, so the next replay still finds one;
//! - a stream's settings differ from the ones the master creates: they are put back, with an
//!   error in the log naming what changed (a `max_age` on the submit stream would expire
//!   acknowledged work; a byte cap lifted would let a flood of submissions fill the store and
//!   starve the journal; `discard: old` on the journal would drop the master's state).

use async_nats::jetstream::{self, stream::Config};
use jetwork_shared::config::StreamsConfig;
use jetwork_shared::{subjects, topology, Unavailable};

/// What the streams looked like.
#[derive(Debug, Clone, Default)]
pub struct Observation {
    /// The journal's first and last sequences.
    pub journal_first: u64,
    pub journal_last: u64,
    /// Settings that differ from the master's, per stream (already being put back).
    pub drift: Vec<String>,
}

/// Reads the three streams, and puts back any settings that drifted.
pub async fn observe(
    js: &jetstream::Context,
    cfg: &StreamsConfig,
) -> Result<Observation, Unavailable> {
    let mut observation = Observation::default();
    let mut drifted = false;
    for expected in
        [topology::submit_stream(cfg), topology::journal_stream(cfg), topology::results_stream(cfg)]
    {
        let stream = js
            .get_stream(&expected.name)
            .await
            .map_err(|e| Unavailable::new(format!("reading stream {}", expected.name), e))?;
        let info = stream.cached_info();
        if expected.name == subjects::JOURNAL_STREAM {
            observation.journal_first = info.state.first_sequence;
            observation.journal_last = info.state.last_sequence;
        }
        let changes = drift(&expected, &info.config);
        if !changes.is_empty() {
            drifted = true;
            observation.drift.push(format!("{}: {}", expected.name, changes.join(", ")));
        }
    }
    if drifted {
        topology::ensure_streams(js, cfg, topology::EnsureMode::CreateOrUpdate)
            .await
            .map_err(|e| Unavailable::new("putting the stream settings back", e))?;
    }
    Ok(observation)
}

/// The settings of `actual` that differ from `expected`, as `name: actual (expected)`.
pub fn drift(expected: &Config, actual: &Config) -> Vec<String> {
    let mut changes = Vec::new();
    let mut check = |name: &str, actual: String, expected: String| {
        if actual != expected {
            changes.push(format!("{name} {actual} (expected {expected})"));
        }
    };
    let mut subjects_actual = actual.subjects.clone();
    let mut subjects_expected = expected.subjects.clone();
    subjects_actual.sort();
    subjects_expected.sort();
    check("subjects", format!("{subjects_actual:?}"), format!("{subjects_expected:?}"));
    check("retention", format!("{:?}", actual.retention), format!("{:?}", expected.retention));
    check("max_age", format!("{:?}", actual.max_age), format!("{:?}", expected.max_age));
    // The server stores "no limit" as -1 whatever it was sent as (0 or -1).
    let limit = |value: i64| if value <= 0 { "none".to_owned() } else { value.to_string() };
    check("max_msgs", limit(actual.max_messages), limit(expected.max_messages));
    check("max_bytes", limit(actual.max_bytes), limit(expected.max_bytes));
    check(
        "max_msgs_per_subject",
        limit(actual.max_messages_per_subject),
        limit(expected.max_messages_per_subject),
    );
    check("discard", format!("{:?}", actual.discard), format!("{:?}", expected.discard));
    check(
        "discard_new_per_subject",
        actual.discard_new_per_subject.to_string(),
        expected.discard_new_per_subject.to_string(),
    );
    if !expected.duplicate_window.is_zero() {
        check(
            "duplicate_window",
            format!("{:?}", actual.duplicate_window),
            format!("{:?}", expected.duplicate_window),
        );
    }
    check("deny_delete", actual.deny_delete.to_string(), expected.deny_delete.to_string());
    check("deny_purge", actual.deny_purge.to_string(), expected.deny_purge.to_string());
    check("allow_direct", actual.allow_direct.to_string(), expected.allow_direct.to_string());
    // Without it (when configured), priority jumps of unannounced submissions silently stop.
    let republish = |config: &Config| match &config.republish {
        Some(r) => format!("{} -> {} (headers only: {})", r.source, r.destination, r.headers_only),
        None => "none".to_owned(),
    };
    check("republish", republish(actual), republish(expected));
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_nats::jetstream::stream::DiscardPolicy;
    use std::time::Duration;

    #[test]
    fn drift_names_each_changed_setting() {
        let cfg = StreamsConfig::default();
        let expected = topology::submit_stream(&cfg);
        assert!(drift(&expected, &expected).is_empty());
        let mut changed = expected.clone();
        changed.max_age = Duration::from_secs(1);
        changed.subjects.push("other.>".to_owned());
        let changes = drift(&expected, &changed);
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert!(changes[0].starts_with("subjects"), "{changes:?}");
        assert!(changes[1].starts_with("max_age 1s"), "{changes:?}");
        // The storage caps: lifted, or the journal made to discard, is noticed.
        let mut uncapped = expected.clone();
        uncapped.max_bytes = -1;
        uncapped.max_messages_per_subject = 0;
        uncapped.discard_new_per_subject = false;
        let changes = drift(&expected, &uncapped);
        assert_eq!(changes.len(), 3, "{changes:?}");
        assert!(changes[0].starts_with("max_bytes none (expected 4294967296)"), "{changes:?}");
        assert!(changes[1].starts_with("max_msgs_per_subject none"), "{changes:?}");
        assert!(changes[2].starts_with("discard_new_per_subject false"), "{changes:?}");
        let journal = topology::journal_stream(&cfg);
        let discarding = Config { discard: DiscardPolicy::Old, ..journal.clone() };
        let changes = drift(&journal, &discarding);
        assert_eq!(changes, ["discard Old (expected New)"]);
        let republishing = StreamsConfig { republish_submissions: true, ..cfg };
        let changes = drift(&topology::submit_stream(&republishing), &expected);
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert!(changes[0].starts_with("republish none (expected jetwork.submit.*"), "{changes:?}");
    }
}
