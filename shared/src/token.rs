//! [`Token`]: an unguessable 128-bit value that proves who was given something. The master
//! hands each attempt a fresh token and accepts a report about the attempt only with it; a
//! worker process picks a session token at start and must present it with every request
//! made under its id. On the wire and in the journal a token is 32 lowercase hex digits.

use std::fmt;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// A 128-bit token.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Token(u128);

impl Token {
    /// The token with this value (the master draws values from its seeded generator).
    pub fn from_u128(value: u128) -> Self {
        Token(value)
    }

    /// A fresh random token (from the OS's generator, via a v4 UUID's 122 random bits plus
    /// six more from a second one).
    pub fn random() -> Self {
        let a = uuid::Uuid::new_v4().as_u128();
        let b = uuid::Uuid::new_v4().as_u128();
        Token(a ^ b.rotate_left(64))
    }

    /// Parses 32 hex digits.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.len() != 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("a token is 32 hex digits".to_owned());
        }
        u128::from_str_radix(text, 16).map(Token).map_err(|e| e.to_string())
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Tokens are secrets between the master and one worker: logs show a prefix only.
        write!(f, "Token({:08x}…)", self.0 >> 96)
    }
}

impl Serialize for Token {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Token {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Token::parse(&text).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_32_hex_digits_both_ways() {
        let token = Token::from_u128(0xabc);
        assert_eq!(token.to_string(), "00000000000000000000000000000abc");
        assert_eq!(Token::parse(&token.to_string()), Ok(token));
        assert!(Token::parse("abc").is_err());
        assert!(Token::parse(&"g".repeat(32)).is_err());
        assert_ne!(Token::random(), Token::random());
        let bytes = crate::codec::encode(&token).unwrap();
        assert_eq!(crate::codec::decode::<Token>(&bytes).unwrap(), token);
        assert!(!format!("{token:?}").contains("abc"), "Debug does not print the secret");
    }
}
