//! [`WorkId`]: the identity of one piece of work, end to end. It is the submitter's
//! `Nats-Msg-Id` (so JetStream deduplicates re-submissions), the key of the work in the
//! master's state, and the last token of its result subject.
//!
//! Invariant: a `WorkId` is 1 to 128 characters of `[A-Za-z0-9_-]`. Ids the system assigns to
//! submissions that carried no `Nats-Msg-Id` are `seq-<stream sequence>`; that prefix is
//! reserved, so a client-chosen id can never collide with an assigned one.

use crate::name::{self, validated_name, InvalidName};

validated_name!(
    /// A validated work id (see the module docs for the rules).
    WorkId,
    "work id",
    128
);

/// The prefix of ids assigned by the system to submissions without a `Nats-Msg-Id`.
pub const ASSIGNED_PREFIX: &str = "seq-";

impl WorkId {
    /// Validates a client-supplied work id.
    pub fn parse(value: &str) -> Result<Self, InvalidName> {
        name::check("work id", value, Self::MAX_LEN)?;
        Ok(WorkId::checked(value))
    }

    /// Validates a client-supplied id and also refuses the reserved `seq-` prefix, for ids
    /// arriving in a submission's `Nats-Msg-Id`.
    pub fn parse_submitted(value: &str) -> Result<Self, InvalidName> {
        let id = Self::parse(value)?;
        if value.starts_with(ASSIGNED_PREFIX) {
            return Err(InvalidName::Reserved { kind: "work id", prefix: ASSIGNED_PREFIX });
        }
        Ok(id)
    }

    /// The id assigned to a submission stored at `seq` without a `Nats-Msg-Id`.
    pub fn assigned(seq: u64) -> Self {
        WorkId::checked(&format!("{ASSIGNED_PREFIX}{seq}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assigned_ids_are_valid_but_reserved_for_submitters() {
        let id = WorkId::assigned(42);
        assert_eq!(id.as_str(), "seq-42");
        assert!(WorkId::parse(id.as_str()).is_ok());
        assert!(matches!(WorkId::parse_submitted("seq-42"), Err(InvalidName::Reserved { .. })));
        assert!(WorkId::parse_submitted("order-42").is_ok());
    }

    #[test]
    fn limit_is_128_characters() {
        assert!(WorkId::parse(&"a".repeat(128)).is_ok());
        assert!(WorkId::parse(&"a".repeat(129)).is_err());
    }

    #[test]
    fn decoding_validates() {
        let bytes = rmp_serde::to_vec("bad.id").unwrap();
        assert!(rmp_serde::from_slice::<WorkId>(&bytes).is_err());
        let bytes = rmp_serde::to_vec("good-id").unwrap();
        assert_eq!(rmp_serde::from_slice::<WorkId>(&bytes).unwrap().as_str(), "good-id");
    }

    #[test]
    fn decoding_refuses_every_other_shape_a_client_could_send() {
        // MessagePack by hand: nil, an integer, a map, a binary that is not UTF-8, and a
        // binary that is a valid id (taken, as a `String` field would take it).
        for bad in
            [&[0xc0][..], &[0x05], &[0x80], &[0xc4, 2, 0xff, 0xfe], &[0xc4, 3, b'a', b'.', b'b']]
        {
            assert!(rmp_serde::from_slice::<WorkId>(bad).is_err(), "{bad:?}");
        }
        let id = rmp_serde::from_slice::<WorkId>(&[0xc4, 2, b'o', b'k']).unwrap();
        assert_eq!(id.as_str(), "ok");
        assert!(serde_json::from_str::<WorkId>(r#""a b""#).is_err());
        assert!(serde_json::from_str::<WorkId>("42").is_err());
        let id: WorkId = serde_json::from_str(r#""job-1""#).unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), r#""job-1""#);
    }
}
