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

    /// The 32 lowercase hex digits, written on the stack (a token is serialized per grant,
    /// report and request, so no `String` is made for it).
    fn hex(&self) -> [u8; 32] {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 32];
        for (i, digit) in out.iter_mut().enumerate() {
            *digit = DIGITS[((self.0 >> (4 * (31 - i))) & 0xf) as usize];
        }
        out
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
        f.write_str(std::str::from_utf8(&self.hex()).map_err(|_| fmt::Error)?)
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
        let hex = self.hex();
        serializer.serialize_str(std::str::from_utf8(&hex).map_err(serde::ser::Error::custom)?)
    }
}

impl<'de> Deserialize<'de> for Token {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Borrowed or transient, the text is parsed where it lies: no `String` per token.
        struct Hex;
        impl de::Visitor<'_> for Hex {
            type Value = Token;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a token: 32 hex digits")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Token, E> {
                Token::parse(text).map_err(E::custom)
            }
            fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Token, E> {
                let text = std::str::from_utf8(bytes)
                    .map_err(|_| E::custom("a token is 32 hex digits"))?;
                self.visit_str(text)
            }
        }
        deserializer.deserialize_str(Hex)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_32_hex_digits_both_ways() {
        let token = Token::from_u128(0xabc);
        assert_eq!(token.to_string(), "00000000000000000000000000000abc");
        let wide = Token::from_u128(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210);
        assert_eq!(
            wide.to_string(),
            format!("{:032x}", 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210u128)
        );
        assert_eq!(
            crate::codec::decode::<Token>(&crate::codec::encode(&wide).unwrap()).unwrap(),
            wide
        );
        assert_eq!(
            serde_json::from_str::<Token>(&serde_json::to_string(&wide).unwrap()).unwrap(),
            wide
        );
        assert_eq!(Token::parse(&token.to_string()), Ok(token));
        assert!(Token::parse("abc").is_err());
        assert!(Token::parse(&"g".repeat(32)).is_err());
        // Whatever shape a client sends in a token's place is refused: nil, an integer, 31
        // digits, a non-hex digit, a binary that is not UTF-8.
        let short = crate::codec::encode(&"a".repeat(31)).unwrap();
        let not_hex = crate::codec::encode(&format!("{}g", "a".repeat(31))).unwrap();
        for bad in [&[0xc0][..], &[0x05], &short, &not_hex, &[0xc4, 2, 0xff, 0xfe]] {
            assert!(crate::codec::decode::<Token>(bad).is_err(), "{bad:?}");
        }
        assert_ne!(Token::random(), Token::random());
        let bytes = crate::codec::encode(&token).unwrap();
        assert_eq!(crate::codec::decode::<Token>(&bytes).unwrap(), token);
        assert!(!format!("{token:?}").contains("abc"), "Debug does not print the secret");
    }
}
