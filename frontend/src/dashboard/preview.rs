//! [`Preview`]: bytes from a job (its payload, its result) as a page can show them — pretty
//! JSON, text, or a hex dump for anything that is not UTF-8 — at most [`Preview::MAX_BYTES`]
//! of them, saying how many there were.
//!
//! Invariant: whatever the bytes, the preview is plain text of bounded length (the page puts
//! it in as text, never as HTML); a cut never splits a UTF-8 character.

use serde::Serialize;

/// One set of bytes, ready to show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Preview {
    /// `json` (pretty-printed), `text`, or `hex` (a dump: offset, bytes, printable ASCII).
    pub kind: &'static str,
    pub text: String,
    /// How many bytes there were in all.
    pub bytes: usize,
    /// Only the first [`Preview::MAX_BYTES`] are shown.
    pub truncated: bool,
}

impl Preview {
    /// Most bytes shown.
    pub const MAX_BYTES: usize = 4096;

    /// The preview of `bytes`.
    pub fn of(bytes: &[u8]) -> Preview {
        let truncated = bytes.len() > Self::MAX_BYTES;
        let shown = &bytes[..bytes.len().min(Self::MAX_BYTES)];
        let text = match std::str::from_utf8(shown) {
            Ok(text) => Some(text),
            // Cut inside a character: the part before it is text.
            Err(e) if truncated && e.error_len().is_none() => {
                std::str::from_utf8(&shown[..e.valid_up_to()]).ok()
            }
            Err(_) => None,
        };
        let (kind, text) = match text {
            // Only whole JSON is pretty-printed: a cut document does not parse.
            Some(text) if !truncated => match serde_json::from_str::<serde_json::Value>(text) {
                Ok(value) if !text.trim().is_empty() => {
                    ("json", serde_json::to_string_pretty(&value).unwrap_or_else(|_| text.into()))
                }
                _ => ("text", text.to_owned()),
            },
            Some(text) => ("text", text.to_owned()),
            None => ("hex", hex_dump(shown)),
        };
        Preview { kind, text, bytes: bytes.len(), truncated }
    }
}

/// `00000000  de ad be ef …  |....|`, 16 bytes a line.
fn hex_dump(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() / 16 * 78 + 78);
    for (line, chunk) in bytes.chunks(16).enumerate() {
        out.push_str(&format!("{:08x} ", line * 16));
        for i in 0..16 {
            match chunk.get(i) {
                Some(b) => out.push_str(&format!(" {b:02x}")),
                None => out.push_str("   "),
            }
        }
        out.push_str("  |");
        out.extend(chunk.iter().map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '.'
            }
        }));
        out.push_str("|\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_pretty_text_is_kept_and_binary_is_dumped() {
        let json = Preview::of(br#"{"a":[1,2]}"#);
        assert_eq!((json.kind, json.bytes, json.truncated), ("json", 11, false));
        assert_eq!(json.text, "{\n  \"a\": [\n    1,\n    2\n  ]\n}");
        let text = Preview::of(b"<script>alert(1)</script>");
        assert_eq!((text.kind, text.text.as_str()), ("text", "<script>alert(1)</script>"));
        // A bare number or string is JSON too, but shown as it came.
        assert_eq!(Preview::of(b"42").text, "42");
        assert_eq!(Preview::of(b"").kind, "text");
        let binary = Preview::of(&[0xff, 0x00, b'A', b' ']);
        assert_eq!(binary.kind, "hex");
        assert_eq!(binary.text, format!("00000000  ff 00 41 20{}  |..A |\n", "   ".repeat(12)));
    }

    #[test]
    fn long_bytes_are_cut_at_the_cap_never_inside_a_character() {
        let mut long = vec![b'a'; Preview::MAX_BYTES - 1];
        long.extend("é and more".as_bytes());
        let p = Preview::of(&long);
        assert_eq!((p.kind, p.truncated, p.bytes), ("text", true, long.len()));
        assert_eq!(p.text.len(), Preview::MAX_BYTES - 1, "the cut 'é' is left out");
        // Cut JSON is text.
        let mut json = b"[".to_vec();
        json.extend(std::iter::repeat_n(b"1,".as_slice(), Preview::MAX_BYTES).flatten());
        json.extend(b"1]");
        assert_eq!(Preview::of(&json).kind, "text");
        let dump = Preview::of(&vec![0xffu8; Preview::MAX_BYTES * 2]);
        assert_eq!((dump.kind, dump.truncated), ("hex", true));
        assert_eq!(dump.text.lines().count(), Preview::MAX_BYTES / 16);
    }
}
