//! [`ObserveServer`]: the small HTTP listener every long-running binary opens when
//! `metrics_listen` is set: `GET /metrics` (Prometheus text format 0.0.4), `GET /healthz` and
//! `GET /readyz` (see [`Health`]).
//!
//! Deliberately minimal, since it only ever answers probes and scrapers: HTTP/1.0-style, one
//! request per connection (`Connection: close`), GET or HEAD only, the request head read up to
//! [`MAX_HEAD`] bytes within [`READ_TIMEOUT`] (a slow or hostile client costs one task, bounded
//! in time and memory), no request body, and at most `http_max_connections` connections at
//! once (a [`ConnectionCap`]: beyond it a connection is answered 503 and closed at once). Each
//! connection runs in a task of its own, so the process's main loop never waits on a scraper;
//! encoding the registry reads atomics only.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::Health;
use crate::connection_cap::ConnectionCap;

/// Longest request head read.
const MAX_HEAD: usize = 8 * 1024;
/// How long a client may take to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The listener, serving until dropped.
#[derive(Debug)]
pub struct ObserveServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

/// Binds the listener address (`metrics_listen`); a port of 0 picks a free one.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

impl ObserveServer {
    /// Serves `registry` and `health` on `listener` until the returned server is dropped.
    /// At most `max_connections` are served at once (see [`ConnectionCap`]).
    pub fn spawn(
        listener: TcpListener,
        registry: Arc<Registry>,
        health: Health,
        max_connections: usize,
    ) -> Self {
        let addr = listener.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        tracing::info!(%addr, max_connections, "serving /metrics, /healthz and /readyz");
        let cap = ConnectionCap::new(max_connections, "metrics");
        let task = tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        let Some(permit) = cap.admit(&stream) else { continue };
                        let (registry, health) = (registry.clone(), health.clone());
                        tokio::spawn(async move {
                            let _ = tokio::time::timeout(
                                READ_TIMEOUT * 2,
                                serve(stream, &registry, &health),
                            )
                            .await;
                            drop(permit);
                        });
                    }
                    // Out of file descriptors and the like: pause rather than spin.
                    Err(e) => {
                        tracing::warn!(error = %e, "observation listener cannot accept");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
        ObserveServer { addr, task }
    }

    /// The address it listens on (with the port picked, if 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for ObserveServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Answers one request on `stream`.
async fn serve(mut stream: TcpStream, registry: &Registry, health: &Health) {
    let head = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Ok(Some(head)) => head,
        _ => return,
    };
    let page = route(&head);
    let (status, content_type, body) = match page {
        Route::Metrics => {
            let mut text = String::new();
            match prometheus_client::encoding::prometheus_text::encode(&mut text, registry) {
                Ok(()) => ("200 OK", "text/plain; version=0.0.4; charset=utf-8", text),
                Err(_) => ("500 Internal Server Error", "text/plain", "cannot encode\n".into()),
            }
        }
        Route::Health | Route::Ready => {
            let probe = if page == Route::Health { health.liveness() } else { health.readiness() };
            let status = if probe.ok { "200 OK" } else { "503 Service Unavailable" };
            (status, "text/plain; charset=utf-8", format!("{}\n", probe.text))
        }
        Route::NotFound => {
            ("404 Not Found", "text/plain", "try /metrics, /healthz or /readyz\n".into())
        }
        Route::BadMethod => ("405 Method Not Allowed", "text/plain", "GET only\n".into()),
    };
    let head_only = head.starts_with("HEAD ");
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if !head_only {
        response.push_str(&body);
    }
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Reads until the end of the request head; `None` if the client closed or sent too much.
async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n") {
            return Some(String::from_utf8_lossy(&buf).into_owned());
        }
        if buf.len() > MAX_HEAD {
            return None;
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Metrics,
    Health,
    Ready,
    NotFound,
    BadMethod,
}

/// Which page the request line asks for (the query string is ignored).
fn route(head: &str) -> Route {
    let mut words = head.lines().next().unwrap_or_default().split_whitespace();
    let (method, target) = (words.next().unwrap_or_default(), words.next().unwrap_or_default());
    if method != "GET" && method != "HEAD" {
        return Route::BadMethod;
    }
    match target.split('?').next().unwrap_or_default() {
        "/metrics" => Route::Metrics,
        "/healthz" | "/livez" => Route::Health,
        "/readyz" => Route::Ready,
        _ => Route::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_method_and_path() {
        assert_eq!(route("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), Route::Metrics);
        assert_eq!(route("GET /readyz?verbose HTTP/1.1\r\n\r\n"), Route::Ready);
        assert_eq!(route("HEAD /healthz HTTP/1.0\r\n\r\n"), Route::Health);
        assert_eq!(route("POST /metrics HTTP/1.1\r\n\r\n"), Route::BadMethod);
        assert_eq!(route("GET / HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(route(""), Route::BadMethod);
    }
}
