//! The built-in executor, the Akka sample's: the payload is an integer `n` (ASCII decimal),
//! the result is `n * n = <n²>`. A payload that is not an integer fails at once: no other
//! attempt could square it.

use bytes::Bytes;

use crate::{Job, JobError};

/// Squares the payload.
pub async fn square(job: Job) -> Result<Bytes, JobError> {
    square_payload(&job.payload).map(Bytes::from).map_err(JobError::permanent)
}

/// The pure part of [`square`].
pub fn square_payload(payload: &[u8]) -> Result<String, String> {
    let text = std::str::from_utf8(payload).map_err(|_| "payload is not UTF-8 text".to_owned())?;
    let n: i64 = text
        .trim()
        .parse()
        .map_err(|_| format!("payload is not an integer: {:?}", truncate(text)))?;
    let square = i128::from(n) * i128::from(n);
    Ok(format!("{n} * {n} = {square}"))
}

fn truncate(text: &str) -> String {
    text.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squares_like_the_sample() {
        assert_eq!(square_payload(b"7").unwrap(), "7 * 7 = 49");
        assert_eq!(square_payload(b" -3\n").unwrap(), "-3 * -3 = 9");
        assert_eq!(
            square_payload(b"9223372036854775807").unwrap(),
            "9223372036854775807 * 9223372036854775807 = 85070591730234615847396907784232501249"
        );
    }

    #[test]
    fn bad_payloads_are_failures_with_a_reason() {
        assert!(square_payload(b"seven").unwrap_err().contains("not an integer"));
        assert!(square_payload(&[0xff, 0xfe]).unwrap_err().contains("UTF-8"));
    }
}
