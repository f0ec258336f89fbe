//! MessagePack encoding of every wire message and journal event. Structs are encoded as maps
//! keyed by field name (`rmp_serde::to_vec_named`) so that clients in other languages can
//! decode them without knowing field order, and so that adding an optional field later does
//! not break old readers.

use bytes::Bytes;
use serde::{de::DeserializeOwned, Serialize};
use thiserror::Error;

/// A message could not be encoded or decoded.
#[derive(Debug, Error)]
pub enum CodecError {
    #[error("cannot encode {what} as MessagePack: {source}")]
    Encode {
        what: &'static str,
        #[source]
        source: rmp_serde::encode::Error,
    },
    #[error("cannot decode {what} from {len} bytes of MessagePack: {source}")]
    Decode {
        what: &'static str,
        len: usize,
        #[source]
        source: rmp_serde::decode::Error,
    },
}

/// Encodes `value` as a MessagePack map.
pub fn encode<T: Serialize>(value: &T) -> Result<Bytes, CodecError> {
    rmp_serde::to_vec_named(value)
        .map(Bytes::from)
        .map_err(|source| CodecError::Encode { what: short_type_name::<T>(), source })
}

/// Encodes `value` as [`encode`] does, into a buffer of `capacity` bytes to start with: for a
/// message whose size is known ahead (a grant carrying payloads), so the buffer is not grown,
/// and everything written so far copied again, about a dozen times on the way to its size.
pub fn encode_sized<T: Serialize>(value: &T, capacity: usize) -> Result<Bytes, CodecError> {
    let mut out = Vec::with_capacity(capacity);
    encode_into(&mut out, value)?;
    Ok(Bytes::from(out))
}

/// Encodes `value` as a MessagePack map into `out` (the same bytes as [`encode`], written as
/// they are produced: for a large value, into a writer that keeps them in pieces rather than
/// one growing buffer).
pub fn encode_into<T: Serialize, W: std::io::Write>(
    out: &mut W,
    value: &T,
) -> Result<(), CodecError> {
    rmp_serde::encode::write_named(out, value)
        .map_err(|source| CodecError::Encode { what: short_type_name::<T>(), source })
}

/// Decodes a `T` from MessagePack bytes.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    rmp_serde::from_slice(bytes).map_err(|source| CodecError::Decode {
        what: short_type_name::<T>(),
        len: bytes.len(),
        source,
    })
}

fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    full.rsplit("::").next().unwrap_or(full)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Sample {
        a: u32,
        #[serde(default)]
        b: Option<String>,
    }

    #[test]
    fn round_trips_and_tolerates_missing_optional_fields() {
        let bytes = encode(&Sample { a: 7, b: None }).unwrap();
        assert_eq!(decode::<Sample>(&bytes).unwrap(), Sample { a: 7, b: None });
        // A map without `b` (an older writer) still decodes.
        let mut map = std::collections::BTreeMap::new();
        map.insert("a", 9u32);
        let bytes = rmp_serde::to_vec_named(&map).unwrap();
        assert_eq!(decode::<Sample>(&bytes).unwrap(), Sample { a: 9, b: None });
    }

    #[test]
    fn a_sized_encoding_is_the_same_bytes_whatever_the_capacity() {
        let value = Sample { a: 7, b: Some("x".repeat(300)) };
        let plain = encode(&value).unwrap();
        for capacity in [0, 1, 64, plain.len(), 1 << 20] {
            assert_eq!(encode_sized(&value, capacity).unwrap(), plain, "capacity {capacity}");
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for garbage in [&b""[..], b"\xc1", b"hello", &[0xff; 64]] {
            let err = decode::<Sample>(garbage).unwrap_err();
            assert!(err.to_string().contains("Sample"), "{err}");
        }
    }
}
