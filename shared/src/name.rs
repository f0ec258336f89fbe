//! The one character rule shared by every identifier that ends up inside a NATS subject token:
//! ASCII letters, digits, `-` and `_`, never empty, bounded in length. Keeping identifiers to
//! this alphabet means a work id, queue or worker id can never inject `.`, `*`, `>` or
//! whitespace into a subject, and other-language clients can validate with one regex:
//! `^[A-Za-z0-9_-]{1,N}$`.

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

/// Declares a validated string newtype: `parse` checks the alphabet, serde round-trips it as
/// a plain string and rejects invalid values on decode, so a decoded message never carries an
/// identifier that could break a subject. Encoding borrows the string and decoding parses the
/// text where it lies: identifiers are in every message, so neither copies it more than once.
/// The text is shared (`Arc<str>`): the leader's state keeps a work id in several indexes and
/// its events and effects name it again, so a clone is a reference, not a new string.
macro_rules! validated_name {
    ($(#[$meta:meta])* $name:ident, $kind:literal, $max:expr) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(std::sync::Arc<str>);

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
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
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0.as_ref().to_owned()
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
}
