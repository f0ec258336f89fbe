//! [`AnyValue`]: any MessagePack value, read without knowing what it should be, and written back
//! as the same value. It lets a reader take a message apart before judging its pieces: the
//! master reads each entry of a report's `outcomes` this way, so that one malformed entry is
//! refused on its own instead of failing the whole report (`report_entries.rs`).
//!
//! Invariant: every well-formed MessagePack value reads as an `AnyValue` (an extension type,
//! which no jetwork message uses, reads as [`AnyValue::Extension`]), and writing a value back
//! gives bytes that decode to what the original bytes decode to, for every type jetwork uses.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

/// A MessagePack value of any type.
#[derive(Debug, Clone, PartialEq)]
pub enum AnyValue {
    Nil,
    Bool(bool),
    Int(i64),
    UInt(u64),
    F32(f32),
    F64(f64),
    Str(String),
    Bin(Vec<u8>),
    Array(Vec<AnyValue>),
    Map(Vec<(AnyValue, AnyValue)>),
    /// An extension type: kept only as "something else" (written back as a string saying so,
    /// so that whatever expected another type names it in its error).
    Extension,
}

impl AnyValue {
    /// The value under `key`, if this is a map holding that string key.
    pub fn get(&self, key: &str) -> Option<&AnyValue> {
        let AnyValue::Map(entries) = self else { return None };
        entries.iter().find(|(k, _)| matches!(k, AnyValue::Str(s) if s == key)).map(|(_, v)| v)
    }
}

impl<'de> Deserialize<'de> for AnyValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(AnyVisitor)
    }
}

struct AnyVisitor;

impl<'de> Visitor<'de> for AnyVisitor {
    type Value = AnyValue;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any MessagePack value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<AnyValue, E> {
        Ok(AnyValue::Nil)
    }

    fn visit_none<E: de::Error>(self) -> Result<AnyValue, E> {
        Ok(AnyValue::Nil)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<AnyValue, D::Error> {
        AnyValue::deserialize(d)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<AnyValue, E> {
        Ok(AnyValue::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<AnyValue, E> {
        Ok(AnyValue::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<AnyValue, E> {
        Ok(AnyValue::UInt(v))
    }

    fn visit_f32<E: de::Error>(self, v: f32) -> Result<AnyValue, E> {
        Ok(AnyValue::F32(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<AnyValue, E> {
        Ok(AnyValue::F64(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<AnyValue, E> {
        Ok(AnyValue::Str(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<AnyValue, E> {
        Ok(AnyValue::Str(v))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<AnyValue, E> {
        Ok(AnyValue::Bin(v.to_vec()))
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<AnyValue, E> {
        Ok(AnyValue::Bin(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<AnyValue, A::Error> {
        // Capped: the length is the sender's claim.
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(AnyValue::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AnyValue, A::Error> {
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0).min(1024));
        while let Some(entry) = map.next_entry()? {
            entries.push(entry);
        }
        Ok(AnyValue::Map(entries))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<AnyValue, D::Error> {
        // rmp_serde hands extension types over as a newtype (tag, bytes).
        de::IgnoredAny::deserialize(d)?;
        Ok(AnyValue::Extension)
    }
}

impl Serialize for AnyValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            AnyValue::Nil => s.serialize_unit(),
            AnyValue::Bool(v) => s.serialize_bool(*v),
            AnyValue::Int(v) => s.serialize_i64(*v),
            AnyValue::UInt(v) => s.serialize_u64(*v),
            AnyValue::F32(v) => s.serialize_f32(*v),
            AnyValue::F64(v) => s.serialize_f64(*v),
            AnyValue::Str(v) => s.serialize_str(v),
            AnyValue::Bin(v) => s.serialize_bytes(v),
            AnyValue::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            AnyValue::Map(entries) => {
                let mut map = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
            AnyValue::Extension => s.serialize_str("<a MessagePack extension type>"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_and_write_back_as_the_same_value() {
        let value = AnyValue::Map(vec![
            (AnyValue::Str("a".into()), AnyValue::Nil),
            (AnyValue::Str("b".into()), AnyValue::Bin(vec![1, 2])),
            (
                AnyValue::Str("c".into()),
                AnyValue::Array(vec![AnyValue::Int(-3), AnyValue::UInt(7)]),
            ),
            (AnyValue::Str("d".into()), AnyValue::F64(1.5)),
            (AnyValue::Str("e".into()), AnyValue::Bool(true)),
        ]);
        let bytes = rmp_serde::to_vec(&value).unwrap();
        assert_eq!(rmp_serde::from_slice::<AnyValue>(&bytes).unwrap(), value);
        assert_eq!(value.get("b"), Some(&AnyValue::Bin(vec![1, 2])));
        assert_eq!(value.get("z"), None);
    }

    #[test]
    fn an_extension_type_reads_as_something_else_and_garbage_is_an_error() {
        // fixext1: type 5, one byte.
        let value = rmp_serde::from_slice::<AnyValue>(&[0xd4, 0x05, 0x01]).unwrap();
        assert_eq!(value, AnyValue::Extension);
        assert!(rmp_serde::from_slice::<AnyValue>(&[0xc1]).is_err());
        assert!(rmp_serde::from_slice::<AnyValue>(&[0x92, 0x01]).is_err(), "truncated");
    }
}
