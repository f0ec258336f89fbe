//! [`HttpListener`]: the one HTTP layer under jetwork's two listeners, the metrics and probes
//! listener ([`ObserveServer`](crate::observe::ObserveServer)) and the dashboard
//! (`jetwork-frontend dashboard`). Each brings an axum [`Router`] with its pages; this module
//! owns the socket and what a connection may cost:
//!
//! - at most `max_connections` at once (`ConnectionCap`): beyond them a new connection is
//!   answered 503 and closed at once, without reading its request, and the refusals are logged
//!   at most one line a second;
//! - hyper reads the request (HTTP/1.0 or 1.1): its head must come within [`HEADER_TIMEOUT`]
//!   (else the connection is closed) and fit in [`MAX_HEAD`] bytes (else 431); a head hyper
//!   cannot parse is answered 400;
//! - one request per connection (`Connection: close`), the whole exchange within the
//!   listener's `deadline`, after which the connection is dropped;
//! - `HEAD` is answered as `GET` without the body (axum's routing), `Content-Length` kept;
//! - every response says `Cache-Control: no-store` and `X-Content-Type-Options: nosniff`;
//! - handlers find the peer's address as axum's [`ConnectInfo<SocketAddr>`].
//!
//! Invariants: each admitted connection runs on a task of its own and holds its place under
//! the cap until that task ends, at the latest at its `deadline`; the layer never reads a
//! request body (neither listener takes one: a handler that wanted one would have to limit
//! it). So a silent, slow or garbage-sending client costs one task, one file descriptor and at
//! most [`MAX_HEAD`] bytes for a bounded time, and never delays another connection or the
//! loop of the process that serves.

mod connection_cap;

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::header::{HeaderValue, CACHE_CONTROL, X_CONTENT_TYPE_OPTIONS};
use axum::response::Response;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tower_service::Service;

use connection_cap::ConnectionCap;

/// Longest request head read (hyper's smallest read buffer); a longer one is answered 431.
pub const MAX_HEAD: usize = 8 * 1024;
/// How long a client may take to send its request head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// One listener's limits; [`HttpListener::serve`] serves a router with them.
#[derive(Debug, Clone)]
pub struct HttpListener {
    /// The listener's name in log lines (`metrics`, `dashboard`).
    name: &'static str,
    cap: ConnectionCap,
    header_timeout: Duration,
    deadline: Duration,
}

impl HttpListener {
    /// A listener called `name` serving at most `max_connections` at once (at least 1), each
    /// connection for at most `deadline` from its acceptance.
    pub fn new(name: &'static str, max_connections: usize, deadline: Duration) -> Self {
        HttpListener {
            name,
            cap: ConnectionCap::new(max_connections, name),
            header_timeout: HEADER_TIMEOUT,
            deadline,
        }
    }

    /// Serves `app` on `listener`, forever: the future never completes, dropping it stops
    /// accepting (connections already admitted finish on their own tasks, within `deadline`).
    pub async fn serve(self, listener: TcpListener, app: Router) {
        let app = app.layer(axum::middleware::map_response(no_store));
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    let Some(permit) = self.cap.admit(&stream) else { continue };
                    let (app, name) = (app.clone(), self.name);
                    let (header_timeout, deadline) = (self.header_timeout, self.deadline);
                    tokio::spawn(async move {
                        let served = connection(stream, peer, app, header_timeout);
                        // Answered 400/431 by hyper, closed by the client, or over its
                        // deadline: nothing an operator acts on, and anyone can cause it.
                        let why = match tokio::time::timeout(deadline, served).await {
                            Ok(Ok(())) => None,
                            Ok(Err(e)) => Some(e.to_string()),
                            Err(_) => Some(format!("over its deadline of {deadline:?}")),
                        };
                        if let Some(why) = why {
                            tracing::debug!(listener = name, %peer, %why, "http connection ended");
                        }
                        drop(permit);
                    });
                }
                // Out of file descriptors and the like: pause rather than spin.
                Err(e) => {
                    tracing::warn!(listener = self.name, error = %e, "http listener cannot accept");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// Serves the one request of `stream` with `app`.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    header_timeout: Duration,
) -> Result<(), hyper::Error> {
    let service = service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        // The router answers every request (its error type is `Infallible`).
        app.clone().call(request)
    });
    http1::Builder::new()
        .keep_alive(false)
        .max_buf_size(MAX_HEAD)
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(stream), service)
        .await
}

/// What no response of these listeners may be: cached (every page is live state), or read
/// by a browser as another type than it says.
async fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.entry(CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    headers.entry(X_CONTENT_TYPE_OPTIONS).or_insert(HeaderValue::from_static("nosniff"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Generous for a loaded machine, far below hyper's own 30 s header timeout.
    const WITHIN: Duration = Duration::from_secs(5);

    /// A listener of `max` connections serving `/hello`, `/peer` and a `/slow` page that
    /// never answers; its address.
    async fn start(max: usize, header_timeout: Duration, deadline: Duration) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
        let addr = listener.local_addr().expect("an address");
        let app = Router::new()
            .route("/hello", get(|| async { "hello" }))
            .route(
                "/peer",
                get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
            )
            .route("/slow", get(std::future::pending::<&'static str>));
        let mut server = HttpListener::new("test", max, deadline);
        server.header_timeout = header_timeout;
        tokio::spawn(server.serve(listener, app));
        addr
    }

    /// Sends `request` on a new connection and reads until the server closes it.
    async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(addr).await.expect("connected");
        stream.write_all(request).await.expect("sent");
        read_to_close(&mut stream).await
    }

    /// What the server sent until it closed the connection (a reset included: a server that
    /// refuses a request it has not read whole closes with unread bytes, which resets).
    async fn read_to_close(stream: &mut TcpStream) -> String {
        let mut raw = Vec::new();
        let read = async {
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = stream.read(&mut chunk).await {
                raw.extend_from_slice(&chunk[..n]);
            }
        };
        tokio::time::timeout(WITHIN, read).await.expect("the server closes the connection in time");
        String::from_utf8_lossy(&raw).into_owned()
    }

    async fn hello(addr: SocketAddr) -> String {
        exchange(addr, b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n").await
    }

    #[tokio::test]
    async fn one_request_per_connection_with_the_common_headers_and_head_without_body() {
        let addr = start(4, HEADER_TIMEOUT, WITHIN).await;
        let answer = hello(addr).await;
        let (head, body) = answer.split_once("\r\n\r\n").expect("a head");
        let head = head.to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200"), "{answer}");
        for line in ["connection: close", "cache-control: no-store", "nosniff", "content-length: 5"]
        {
            assert!(head.contains(line), "{line}: {answer}");
        }
        assert_eq!(body, "hello");

        let answer = exchange(addr, b"HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let (head, body) = answer.split_once("\r\n\r\n").expect("a head");
        assert!(head.to_ascii_lowercase().contains("content-length: 5"), "{answer}");
        assert_eq!(body, "", "HEAD has no body");

        let answer = exchange(addr, b"POST /hello HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
        let answer = exchange(addr, b"GET /hello HTTP/1.0\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.0 200") && answer.ends_with("hello"), "{answer}");
    }

    #[tokio::test]
    async fn handlers_see_the_peer() {
        let addr = start(4, HEADER_TIMEOUT, WITHIN).await;
        let mut stream = TcpStream::connect(addr).await.expect("connected");
        let me = stream.local_addr().expect("an address");
        stream.write_all(b"GET /peer HTTP/1.1\r\n\r\n").await.expect("sent");
        let answer = read_to_close(&mut stream).await;
        assert!(answer.ends_with(&me.to_string()), "{me}: {answer}");
    }

    #[tokio::test]
    async fn garbage_and_oversized_heads_are_refused_and_others_still_served() {
        let addr = start(4, HEADER_TIMEOUT, WITHIN).await;
        for garbage in [
            &b"\x16\x03\x01\x02\x00 not http\r\n\r\n"[..],
            b"GET\r\n\r\n",
            b"GET / HTTP/9.9\r\n\r\n",
            b"GET /hello HTTP/1.1\r\nno colon here\r\n\r\n",
        ] {
            let answer = exchange(addr, garbage).await;
            assert!(answer.starts_with("HTTP/1.1 400"), "{garbage:?}: {answer}");
        }
        let big = format!("GET /hello HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        let answer = exchange(addr, big.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
        let answer = hello(addr).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }

    #[tokio::test]
    async fn a_silent_client_is_closed_after_the_header_timeout_and_blocks_nobody() {
        let addr = start(4, Duration::from_millis(300), WITHIN).await;
        let mut silent = TcpStream::connect(addr).await.expect("connected");
        let mut half = TcpStream::connect(addr).await.expect("connected");
        half.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n").await.expect("sent");
        let answer = hello(addr).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "served while two wait: {answer}");
        assert_eq!(read_to_close(&mut silent).await, "", "closed without an answer");
        assert_eq!(read_to_close(&mut half).await, "", "closed without an answer");
    }

    #[tokio::test]
    async fn a_connection_ends_at_its_deadline() {
        let addr = start(1, HEADER_TIMEOUT, Duration::from_millis(300)).await;
        let answer = exchange(addr, b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(answer, "", "dropped at the deadline");
        // Its place under the cap is free again.
        let answer = hello(addr).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }

    #[tokio::test]
    async fn beyond_the_cap_a_connection_is_answered_503_until_one_ends() {
        let addr = start(1, Duration::from_millis(500), WITHIN).await;
        let mut held = TcpStream::connect(addr).await.expect("connected");
        let answer = hello(addr).await;
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(answer.contains("too many connections"), "{answer}");
        // The held one times out without a request; then a place is free.
        assert_eq!(read_to_close(&mut held).await, "");
        // Its task ends just after the close: ask until served, within a deadline.
        let deadline = tokio::time::Instant::now() + WITHIN;
        loop {
            let answer = hello(addr).await;
            if answer.starts_with("HTTP/1.1 200") {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "never served again: {answer}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
