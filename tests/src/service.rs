//! Calling a master endpoint with any bytes at all, as a hostile or careless client would, and
//! reading its micro-service reply: the body, or the [`Refusal`] (code and reason, from the
//! `Nats-Service-Error*` headers) it was answered with.

use bytes::Bytes;
use jetwork_shared::headers;

/// A request the master refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: u16,
    pub reason: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code, self.reason)
    }
}

impl Refusal {
    /// The refusal a reply carries, if it is one (a code that cannot be read counts as 0).
    pub fn of(reply: &async_nats::Message) -> Option<Refusal> {
        let found = reply.headers.as_ref()?;
        let reason = found.get(headers::NATS_SERVICE_ERROR)?.as_str().to_owned();
        let code = found
            .get(headers::NATS_SERVICE_ERROR_CODE)
            .and_then(|c| c.as_str().parse().ok())
            .unwrap_or(0);
        Some(Refusal { code, reason })
    }
}

/// Sends `payload` as it is to `subject`: the reply's body, or the refusal. An error is no
/// reply at all (a timeout, no responders), which no request to a live master may end in.
pub async fn call_raw(
    nats: &async_nats::Client,
    subject: &str,
    payload: impl Into<Bytes>,
) -> anyhow::Result<Result<Bytes, Refusal>> {
    let reply = nats.request(subject.to_owned(), payload.into()).await?;
    Ok(match Refusal::of(&reply) {
        Some(refusal) => Err(refusal),
        None => Ok(reply.payload),
    })
}
