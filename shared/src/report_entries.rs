//! [`ReceivedReport`]: a worker's [`Report`] as the master reads it, entry by entry. A report
//! whose every outcome is well formed decodes as it always did (and costs nothing more); one
//! with a malformed entry (a `result: nil`, a missing token, a status nobody knows) is read
//! again piece by piece, and only that entry is refused, with a reason naming the field: the
//! outcomes beside it are still judged. (Before, one bad entry made the master refuse the whole
//! report with 400, completed outcomes included.)
//!
//! Invariant: `report.outcomes` and `unreadable` together hold one entry per element of the
//! sent `outcomes`, and `unreadable` is sorted by `index`; the report's own fields
//! (`worker_id`, `session`, `slots`, `outcomes` being an array) must still be readable, or the
//! whole report is refused as before.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::codec::{self, CodecError};
use crate::msgpack_value::AnyValue;
use crate::protocol::{Outcome, OutcomeStatus, Report, RunningWork};
use crate::{Token, WorkId, WorkerId};

/// A report as read: its readable outcomes (in order) and the entries that were not.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedReport {
    pub report: Report,
    pub unreadable: Vec<UnreadableOutcome>,
}

/// An entry of a report's `outcomes` that is not an [`Outcome`]: it gets the verdict
/// `rejected` with `reason`, and records nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreadableOutcome {
    /// Its position among the report's `outcomes` (0-based), where its verdict goes.
    pub index: usize,
    /// Its `work_id`, if that much could be read.
    pub work_id: Option<WorkId>,
    /// Its `attempt`, if that could be read (else 0).
    pub attempt: u32,
    /// What is wrong with it, naming the field.
    pub reason: String,
}

/// The report's own fields, with its outcomes left unread.
#[derive(Deserialize)]
struct Envelope {
    worker_id: WorkerId,
    session: Token,
    #[serde(default)]
    outcomes: Vec<AnyValue>,
    #[serde(default)]
    slots: u32,
    /// What the worker holds (see [`Report::running`]); an unreadable list is no list: the
    /// report is still judged, only lost grants are not handed out again.
    #[serde(default)]
    running: Option<AnyValue>,
}

impl ReceivedReport {
    /// Reads a report from MessagePack; an error only if its own fields are unreadable.
    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        let whole = match codec::decode::<Report>(bytes) {
            Ok(report) => return Ok(ReceivedReport { report, unreadable: Vec::new() }),
            Err(e) => e,
        };
        let Ok(envelope) = codec::decode::<Envelope>(bytes) else { return Err(whole) };
        let mut outcomes = Vec::with_capacity(envelope.outcomes.len());
        let mut unreadable = Vec::new();
        for (index, entry) in envelope.outcomes.into_iter().enumerate() {
            match read_outcome(&entry) {
                Ok(outcome) => outcomes.push(outcome),
                Err(reason) => unreadable.push(UnreadableOutcome {
                    index,
                    work_id: entry.get("work_id").and_then(|v| field::<WorkId>(v).ok()),
                    attempt: entry.get("attempt").and_then(|v| field::<u32>(v).ok()).unwrap_or(0),
                    reason,
                }),
            }
        }
        let report = Report {
            worker_id: envelope.worker_id,
            session: envelope.session,
            outcomes,
            slots: envelope.slots,
            running: envelope.running.and_then(|v| field::<Vec<RunningWork>>(&v).ok()),
        };
        Ok(ReceivedReport { report, unreadable })
    }
}

/// One entry as an [`Outcome`], or why not (the first field found wrong, by name).
fn read_outcome(entry: &AnyValue) -> Result<Outcome, String> {
    let AnyValue::Map(fields) = entry else {
        return Err("an outcome must be a map keyed by field name".to_owned());
    };
    for (key, value) in fields {
        let AnyValue::Str(key) = key else { continue };
        let checked = match key.as_str() {
            "work_id" => field::<WorkId>(value).map(drop),
            "attempt" => field::<u32>(value).map(drop),
            "token" => field::<Token>(value).map(drop),
            "status" => field::<OutcomeStatus>(value).map(drop),
            "result" => field::<Bytes>(value).map(drop),
            "reason" => field::<Option<String>>(value).map(drop),
            "non_retryable" => field::<bool>(value).map(drop),
            _ => Ok(()), // unknown keys are ignored, as everywhere in worker messages
        };
        checked.map_err(|e| format!("`{key}`: {e}"))?;
    }
    // Every field present is readable: what is left to find is a missing required one.
    let bytes = rmp_serde::to_vec(entry).map_err(|e| e.to_string())?;
    rmp_serde::from_slice(&bytes).map_err(|e| e.to_string())
}

/// Reads one field's value as a `T` (the reason is serde's: "invalid type: unit value,
/// expected byte array").
fn field<T: DeserializeOwned>(value: &AnyValue) -> Result<T, String> {
    let bytes = rmp_serde::to_vec(value).map_err(|e| e.to_string())?;
    rmp_serde::from_slice(&bytes).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;

    fn outcome(work_id: &str) -> Outcome {
        Outcome {
            work_id: WorkId::parse(work_id).unwrap(),
            attempt: 1,
            token: Token::from_u128(7),
            status: OutcomeStatus::Completed,
            result: Bytes::from_static(b"ok"),
            reason: None,
            non_retryable: false,
        }
    }

    /// A report whose `outcomes` are given as raw values.
    fn raw_report(outcomes: Vec<AnyValue>) -> Vec<u8> {
        #[derive(Serialize)]
        struct Raw {
            worker_id: &'static str,
            session: String,
            outcomes: Vec<AnyValue>,
            slots: u32,
        }
        let session = Token::from_u128(9).to_string();
        rmp_serde::to_vec_named(&Raw { worker_id: "w1", session, outcomes, slots: 2 }).unwrap()
    }

    fn as_value(outcome: &Outcome) -> AnyValue {
        rmp_serde::from_slice(&rmp_serde::to_vec_named(outcome).unwrap()).unwrap()
    }

    fn with(mut value: AnyValue, key: &str, new: Option<AnyValue>) -> AnyValue {
        if let AnyValue::Map(entries) = &mut value {
            entries.retain(|(k, _)| !matches!(k, AnyValue::Str(s) if s == key));
            if let Some(new) = new {
                entries.push((AnyValue::Str(key.to_owned()), new));
            }
        }
        value
    }

    #[test]
    fn a_well_formed_report_reads_as_before() {
        let report = Report {
            worker_id: WorkerId::parse("w1").unwrap(),
            session: Token::from_u128(9),
            outcomes: vec![outcome("a"), outcome("b")],
            slots: 2,
            running: Some(vec![RunningWork { work_id: WorkId::parse("a").unwrap(), attempt: 1 }]),
        };
        let read = ReceivedReport::decode(&codec::encode(&report).unwrap()).unwrap();
        assert_eq!(read, ReceivedReport { report, unreadable: vec![] });
    }

    #[test]
    fn a_malformed_entry_is_refused_on_its_own_naming_the_field() {
        let good = as_value(&outcome("a"));
        let nil_result = with(as_value(&outcome("b")), "result", Some(AnyValue::Nil));
        let no_token = with(as_value(&outcome("c")), "token", None);
        let bad_status =
            with(as_value(&outcome("d")), "status", Some(AnyValue::Str("done".into())));
        let bad_id = with(as_value(&outcome("e")), "work_id", Some(AnyValue::Str("a.b".into())));
        let bytes = raw_report(vec![
            nil_result,
            good,
            no_token,
            AnyValue::UInt(5),
            bad_status,
            bad_id,
            as_value(&outcome("f")),
        ]);
        let read = ReceivedReport::decode(&bytes).unwrap();
        let ids: Vec<_> = read.report.outcomes.iter().map(|o| o.work_id.as_str()).collect();
        assert_eq!(ids, ["a", "f"]);
        assert_eq!(read.report.slots, 2);
        let refused: Vec<_> = read
            .unreadable
            .iter()
            .map(|u| (u.index, u.work_id.as_ref().map(WorkId::as_str), u.attempt))
            .collect();
        assert_eq!(
            refused,
            [(0, Some("b"), 1), (2, Some("c"), 1), (3, None, 0), (4, Some("d"), 1), (5, None, 1)]
        );
        let reasons: Vec<_> = read.unreadable.iter().map(|u| u.reason.as_str()).collect();
        assert!(reasons[0].starts_with("`result`: invalid type: unit value"), "{reasons:?}");
        assert!(reasons[1].contains("missing field `token`"), "{reasons:?}");
        assert!(reasons[2].contains("must be a map"), "{reasons:?}");
        assert!(reasons[3].starts_with("`status`: unknown variant `done`"), "{reasons:?}");
        assert!(reasons[4].starts_with("`work_id`:"), "{reasons:?}");
    }

    #[test]
    fn a_report_whose_own_fields_are_unreadable_is_refused_whole() {
        let bytes = raw_report(vec![]);
        let mut value: AnyValue = rmp_serde::from_slice(&bytes).unwrap();
        value = with(value, "session", Some(AnyValue::Nil));
        assert!(ReceivedReport::decode(&rmp_serde::to_vec(&value).unwrap()).is_err());
        assert!(ReceivedReport::decode(b"\x81\xa1x\x01").is_err());
        assert!(ReceivedReport::decode(b"{\"worker_id\":\"w1\"}").is_err());
    }
}
