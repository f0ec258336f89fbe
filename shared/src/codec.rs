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
    fn garbage_is_an_error_not_a_panic() {
        for garbage in [&b""[..], b"\xc1", b"hello", &[0xff; 64]] {
            let err = decode::<Sample>(garbage).unwrap_err();
            assert!(err.to_string().contains("Sample"), "{err}");
        }
    }
}
