//! [`ConnectionCap`]: how many connections an [`HttpListener`](super::HttpListener) (the
//! metrics and probes listener, the dashboard) serves at once.
//!
//! Anyone who can reach a listener can open connections and leave them idle; each costs a
//! file descriptor and a task until its header timeout. Without a cap, enough of them run the
//! process out of file descriptors, and then its NATS connections and journal with it. With
//! one, a connection beyond it is answered `503` at once, without waiting for its request
//! (a single non-blocking write of a fixed answer, so a client that does not read costs
//! nothing, and nothing of what it sends is read), and closed; those already admitted are
//! served as before. The refusals are logged at most once a second.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::log_limit::LogLimit;

/// What a connection beyond the cap is told before it is closed.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n\
Content-Length: 28\r\nRetry-After: 1\r\nConnection: close\r\n\r\ntoo many connections; retry\n";

/// The connections one listener serves at once.
#[derive(Debug, Clone)]
pub struct ConnectionCap {
    permits: Arc<Semaphore>,
    max: usize,
    /// The listener's name in the log lines (`metrics`, `dashboard`).
    listener: &'static str,
    refused: Arc<Mutex<LogLimit>>,
}

impl ConnectionCap {
    /// At most `max` connections at once (at least 1) on `listener`.
    pub fn new(max: usize, listener: &'static str) -> Self {
        let max = max.max(1);
        ConnectionCap {
            permits: Arc::new(Semaphore::new(max)),
            max,
            listener,
            refused: Arc::new(Mutex::new(LogLimit::default())),
        }
    }

    /// Admits `stream` (the connection is served while the permit is held), or, at the cap,
    /// answers it 503 and closes it (`None`).
    pub fn admit(&self, stream: &TcpStream) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Some(permit);
        }
        // Best effort: a client whose buffer is full simply sees the connection closed.
        let _ = stream.try_write(REFUSAL);
        let allowed = self.refused.lock().unwrap_or_else(PoisonError::into_inner).allow();
        if let Some(suppressed) = allowed {
            tracing::warn!(
                listener = self.listener,
                max = self.max,
                suppressed,
                "too many connections at once; a new one is refused"
            );
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    #[test]
    fn the_refusal_says_how_long_its_body_is() {
        let text = std::str::from_utf8(REFUSAL).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())), "{text}");
    }

    #[tokio::test]
    async fn beyond_the_cap_a_connection_is_refused_until_one_is_released() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cap = ConnectionCap::new(2, "test");
        let mut held = Vec::new();
        for _ in 0..2 {
            let _client = TcpStream::connect(addr).await.unwrap();
            let (stream, _) = listener.accept().await.unwrap();
            held.push(cap.admit(&stream).expect("below the cap"));
        }
        let mut refused = TcpStream::connect(addr).await.unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        assert!(cap.admit(&stream).is_none());
        drop(stream);
        let mut answer = String::new();
        refused.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");

        held.pop();
        let _client = TcpStream::connect(addr).await.unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        assert!(cap.admit(&stream).is_some(), "a released place is taken again");
    }
}
