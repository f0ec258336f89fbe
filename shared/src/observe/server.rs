//! [`ObserveServer`]: the HTTP listener every long-running binary opens when `metrics_listen`
//! is set: `GET /metrics` (Prometheus text format 0.0.4), `GET /healthz` (or `/livez`) and
//! `GET /readyz` (see [`Health`]); `HEAD` as well, any other method 405, any other path 404.
//!
//! It is the pages only: the socket, the connection cap (`http_max_connections`, 503 beyond),
//! the header timeout and size limit, one request per connection and HEAD are the
//! [`HttpListener`]'s, here with a [`DEADLINE`] per connection. The listener runs on a task of
//! its own and each connection on another, so the process's main loop never waits on a
//! scraper; encoding the registry reads atomics only.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::{Health, Probe};
use crate::http_listener::HttpListener;

/// How long one connection may take in all, its request head included.
pub const DEADLINE: Duration = Duration::from_secs(10);

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

/// What the pages read.
#[derive(Clone)]
struct Pages {
    registry: Arc<Registry>,
    health: Health,
}

impl ObserveServer {
    /// Serves `registry` and `health` on `listener` until the returned server is dropped.
    /// At most `max_connections` are served at once (see [`HttpListener`]).
    pub fn spawn(
        listener: TcpListener,
        registry: Arc<Registry>,
        health: Health,
        max_connections: usize,
    ) -> Self {
        let addr = listener.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        tracing::info!(%addr, max_connections, "serving /metrics, /healthz and /readyz");
        let server = HttpListener::new("metrics", max_connections, DEADLINE);
        let task = tokio::spawn(server.serve(listener, router(Pages { registry, health })));
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

/// The pages; the query string is ignored.
fn router(pages: Pages) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(liveness))
        .route("/livez", get(liveness))
        .route("/readyz", get(readiness))
        .method_not_allowed_fallback(get_only)
        .fallback(elsewhere)
        .with_state(pages)
}

async fn metrics(State(pages): State<Pages>) -> Response {
    let mut text = String::new();
    match prometheus_client::encoding::prometheus_text::encode(&mut text, &pages.registry) {
        Ok(()) => text_page(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", text),
        Err(_) => {
            text_page(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", "cannot encode\n".into())
        }
    }
}

async fn liveness(State(pages): State<Pages>) -> Response {
    probe(pages.health.liveness())
}

async fn readiness(State(pages): State<Pages>) -> Response {
    probe(pages.health.readiness())
}

/// 200 or 503, with the probe's one line.
fn probe(probe: Probe) -> Response {
    let status = if probe.ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    text_page(status, "text/plain; charset=utf-8", format!("{}\n", probe.text))
}

async fn get_only() -> Response {
    text_page(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "GET only\n".into())
}

/// A path it does not serve: 404, or 405 for a method it never answers.
async fn elsewhere(method: Method) -> Response {
    if method == Method::GET || method == Method::HEAD {
        let hint = "try /metrics, /healthz or /readyz\n";
        text_page(StatusCode::NOT_FOUND, "text/plain", hint.into())
    } else {
        get_only().await
    }
}

fn text_page(status: StatusCode, content_type: &'static str, body: String) -> Response {
    (status, [(CONTENT_TYPE, content_type)], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// `request` sent to a real listener; the answer as text.
    async fn ask(addr: SocketAddr, request: &str) -> String {
        let mut stream = TcpStream::connect(addr).await.expect("connected");
        stream.write_all(request.as_bytes()).await.expect("sent");
        let mut raw = Vec::new();
        let read = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut raw)).await;
        read.expect("answered in time").expect("read");
        String::from_utf8_lossy(&raw).into_owned()
    }

    #[tokio::test]
    async fn routes_by_method_and_path() {
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.expect("bound");
        // Never connected: both probes fail, saying so.
        let health = Health::new();
        let mut registry = Registry::default();
        super::super::register_build_info(&mut registry, "test", "1.2.3", &[]);
        let server = ObserveServer::spawn(listener, Arc::new(registry), health, 4);
        let addr = server.local_addr();

        let metrics = ask(addr, "GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
        assert!(metrics.contains("text/plain; version=0.0.4; charset=utf-8"), "{metrics}");
        assert!(metrics.contains("jetwork_build_info{"), "{metrics}");
        let ready = ask(addr, "GET /readyz?verbose HTTP/1.1\r\n\r\n").await;
        assert!(
            ready.starts_with("HTTP/1.1 503") && ready.ends_with("not connected to NATS yet\n"),
            "{ready}"
        );
        let live = ask(addr, "HEAD /healthz HTTP/1.0\r\n\r\n").await;
        assert!(live.starts_with("HTTP/1.0 503") && live.ends_with("\r\n\r\n"), "{live}");
        for (request, status, body) in [
            ("POST /metrics HTTP/1.1\r\n\r\n", "405", "GET only\n"),
            ("DELETE /nowhere HTTP/1.1\r\n\r\n", "405", "GET only\n"),
            ("GET / HTTP/1.1\r\n\r\n", "404", "try /metrics, /healthz or /readyz\n"),
        ] {
            let answer = ask(addr, request).await;
            assert!(answer.starts_with(&format!("HTTP/1.1 {status}")), "{request}: {answer}");
            assert!(answer.ends_with(body), "{request}: {answer}");
        }
    }
}
