//! The one character rule shared by every identifier that ends up inside a NATS subject token:
//! ASCII letters, digits, `-` and `_`, never empty, bounded in length. Keeping identifiers to
//! this alphabet means a work id, queue or worker id can never inject `.`, `*`, `>` or
//! whitespace into a subject, and other-language clients can validate with one regex:
//! `^[A-Za-z0-9_-]{1,N}$`.
//!
//! Invariant: names order and compare exactly as their text does. Each carries an
//! [`order_key`] that decides a comparison whenever it differs (so ordered indexes rarely
//! follow the pointer to the text); equal keys fall back to the text.

use thiserror::Error;

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InvalidName {
    #[error("{kind} must not be empty")]
    Empty { kind: &'static str },
    #[error("{kind} is {len} characters long; the limit is {max}")]
    TooLong { kind: &'static str, len: usize, max: usize },
    #[error("{kind} contains {found:?}; only ASCII letters, digits, '-' and '_' are allowed")]
    BadCharacter { kind: &'static str, found: char },
    #[error("{kind} must not start with the reserved prefix {prefix:?}")]
    Reserved { kind: &'static str, prefix: &'static str },
}

/// Checks `value` against the identifier alphabet and a length limit.
pub fn check(kind: &'static str, value: &str, max: usize) -> Result<(), InvalidName> {
    if value.is_empty() {
        return Err(InvalidName::Empty { kind });
    }
    let len = value.chars().count();
    if len > max {
        return Err(InvalidName::TooLong { kind, len, max });
    }
    if let Some(found) =
        value.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(InvalidName::BadCharacter { kind, found });
    }
    Ok(())
}

/// Where each character of the alphabet sorts among the others (`-`, digits, upper case, `_`,
/// lower case, as in ASCII), 0 to 63; anything else is 0.
const RANK: [u8; 256] = {
    let mut rank = [0u8; 256];
    let mut byte = 0;
    let mut next = 0;
    while byte < 256 {
        let c = byte as u8;
        if c == b'-' || c == b'_' || c.is_ascii_alphanumeric() {
            rank[byte] = next;
            next += 1;
        }
        byte += 1;
    }
    rank
};

/// A number that orders names as their text does, wherever it can tell them apart: the ranks
/// of the first ten characters, six bits each, a missing character counting as 0.
///
/// If `a < b` as text then `order_key(a) <= order_key(b)`: at the first character where they
/// differ (within ten), `a`'s has the lower rank; if `a` is a prefix of `b`, `b`'s extra
/// characters add ranks of at least 0. So the key decides whenever it differs, and equal keys
/// fall back to the text (`-` ranks 0 like a missing character: `a` and `a-` tie and the text
/// decides). Only for text that passed [`check`].
pub fn order_key(text: &str) -> u64 {
    let mut key = 0u64;
    for i in 0..10 {
        let rank = text.as_bytes().get(i).map_or(0, |&b| RANK[b as usize]);
        key = (key << 6) | u64::from(rank);
    }
    key
}

/// Declares a validated string newtype: `parse` checks the alphabet, serde round-trips it as
/// a plain string and rejects invalid values on decode, so a decoded message never carries an
/// identifier that could break a subject. Encoding borrows the string and decoding parses the
/// text where it lies: identifiers are in every message, so neither copies it more than once.
/// The text is shared (`Arc<str>`): the leader's state keeps a work id in several indexes and
/// its events and effects name it again, so a clone is a reference, not a new string. Next to
/// it is [`order_key`] of its first characters, so the leader's ordered indexes (every job is
/// in several, keyed by work id) compare names without following the pointer to the text.
macro_rules! validated_name {
    ($(#[$meta:meta])* $name:ident, $kind:literal, $max:expr) => {
        $(#[$meta])*
        #[derive(Clone)]
        pub struct $name {
            text: std::sync::Arc<str>,
            /// [`order_key`]($crate::name::order_key) of the text.
            order: u64,
        }

        impl $name {
            /// Wraps text that passed [`check`]($crate::name::check).
            fn checked(text: &str) -> Self {
                $name { text: text.into(), order: $crate::name::order_key(text) }
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.order == other.order && self.text == other.text
            }
        }

        impl Eq for $name {}

        impl Ord for $name {
            /// The text's order; the key decides without reading the text unless the first
            /// ten characters are alike.
            fn cmp(&self, other: &Self) -> std::cmp::Ordering {
                self.order.cmp(&other.order).then_with(|| self.text.cmp(&other.text))
            }
        }

        impl PartialOrd for $name {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }

        impl std::hash::Hash for $name {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                self.text.hash(state)
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_tuple(stringify!($name)).field(&self.text).finish()
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.text)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct Text;
                impl serde::de::Visitor<'_> for Text {
                    type Value = $name;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(f, "a {}", $kind)
                    }
                    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<$name, E> {
                        $name::parse(text).map_err(E::custom)
                    }
                    fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<$name, E> {
                        let text = std::str::from_utf8(bytes).map_err(|_| {
                            E::invalid_value(serde::de::Unexpected::Bytes(bytes), &self)
                        })?;
                        self.visit_str(text)
                    }
                }
                deserializer.deserialize_str(Text)
            }
        }

        impl $name {
            /// The longest accepted value, in characters.
            pub const MAX_LEN: usize = $max;

            /// Returns the identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.text
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(&self.text)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.text
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.text.as_ref().to_owned()
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::name::InvalidName;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = $crate::name::InvalidName;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(&value)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = $crate::name::InvalidName;
            fn try_from(value: &str) -> Result<Self, Self::Error> {
                Self::parse(value)
            }
        }
    };
}
pub(crate) use validated_name;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_alphabet() {
        assert_eq!(check("id", "Az09-_", 10), Ok(()));
    }

    #[test]
    fn rejects_subject_metacharacters_and_whitespace() {
        for bad in ["a.b", "a*", "a>", "a b", "a\tb", "é", "a/b"] {
            assert!(matches!(check("id", bad, 10), Err(InvalidName::BadCharacter { .. })), "{bad}");
        }
    }

    #[test]
    fn rejects_empty_and_too_long() {
        assert_eq!(check("id", "", 3), Err(InvalidName::Empty { kind: "id" }));
        assert_eq!(
            check("id", "abcd", 3),
            Err(InvalidName::TooLong { kind: "id", len: 4, max: 3 })
        );
    }

    /// Names order exactly as their text, and are equal exactly when their text is: the key
    /// only ever short-cuts the comparison.
    mod order {
        use proptest::prelude::*;

        use crate::WorkId;

        fn name() -> impl Strategy<Value = String> {
            // Short names over the extremes of the alphabet tie often within ten characters;
            // long ones differ past the key.
            prop_oneof!["[-0Az_a]{1,12}", "[-0-9A-Za-z_]{1,40}", "seq-[0-9]{1,12}"]
        }

        proptest! {
            #[test]
            fn names_order_as_their_text(a in name(), b in name()) {
                let (x, y) = (WorkId::parse(&a).unwrap(), WorkId::parse(&b).unwrap());
                prop_assert_eq!(x.cmp(&y), a.cmp(&b));
                prop_assert_eq!(x == y, a == b);
            }
        }

        #[test]
        fn the_alphabet_ranks_as_ascii_and_prefixes_sort_first() {
            let alphabet: Vec<char> = ('\0'..='\x7f')
                .filter(|c| c.is_ascii_alphanumeric() || "-_".contains(*c))
                .collect();
            let ranks: Vec<u8> = alphabet.iter().map(|c| super::super::RANK[*c as usize]).collect();
            assert_eq!(ranks, (0..64).collect::<Vec<u8>>());
            let mut names: Vec<String> = ["a", "a-", "a-0", "a0", "seq-9", "seq-10", "seq-100"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            names.extend(alphabet.iter().flat_map(|c| [c.to_string(), format!("{c}{c}")]));
            let mut by_text = names.clone();
            by_text.sort();
            let mut by_id: Vec<WorkId> = names.iter().map(|n| WorkId::parse(n).unwrap()).collect();
            by_id.sort();
            assert_eq!(by_id.iter().map(|i| i.as_str().to_owned()).collect::<Vec<_>>(), by_text);
        }
    }
}
