//! [`Scraper`]: reads a jetwork process's observation listener the way Prometheus and a
//! Kubernetes probe do (plain HTTP GET), and parses the text format into [`Scrape`] so a test
//! can compare the numbers with what it knows happened.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A listener on a free loopback port, for a component's `metrics_listen`, and its address.
pub async fn local_listener() -> anyhow::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

/// Talks to one observation listener.
#[derive(Debug, Clone, Copy)]
pub struct Scraper {
    pub addr: SocketAddr,
}

/// One page: the status code and the body.
#[derive(Debug, Clone)]
pub struct Page {
    pub status: u16,
    pub body: String,
}

impl Scraper {
    /// GETs `path`.
    pub async fn get(&self, path: &str) -> anyhow::Result<Page> {
        let exchange = async {
            let mut stream = TcpStream::connect(self.addr).await?;
            let request = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", self.addr);
            stream.write_all(request.as_bytes()).await?;
            let mut raw = Vec::new();
            stream.read_to_end(&mut raw).await?;
            anyhow::Ok(String::from_utf8_lossy(&raw).into_owned())
        };
        let raw = tokio::time::timeout(Duration::from_secs(5), exchange)
            .await
            .context("the listener did not answer within 5s")??;
        let (head, body) = raw.split_once("\r\n\r\n").context("no end of headers")?;
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("no status code")?;
        Ok(Page { status, body: body.to_owned() })
    }

    /// The status of `path` (`/healthz`, `/readyz`), 0 if the listener does not answer.
    pub async fn status(&self, path: &str) -> u16 {
        self.get(path).await.map_or(0, |p| p.status)
    }

    /// `/metrics`, parsed.
    pub async fn metrics(&self) -> anyhow::Result<Scrape> {
        let page = self.get("/metrics").await?;
        anyhow::ensure!(page.status == 200, "/metrics answered {}", page.status);
        Ok(Scrape::parse(&page.body))
    }
}

/// A parsed scrape: every sample by its series (name and labels as written).
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    samples: HashMap<String, f64>,
    pub text: String,
}

impl Scrape {
    /// Parses the Prometheus text format (comments skipped).
    pub fn parse(text: &str) -> Self {
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                Some((series.to_owned(), value.parse().ok()?))
            })
            .collect();
        Scrape { samples, text: text.to_owned() }
    }

    /// The sample of `name` with exactly `labels` (in the order written), if present.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let key = if labels.is_empty() {
            name.to_owned()
        } else {
            let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            format!("{name}{{{}}}", inner.join(","))
        };
        self.samples.get(&key).copied()
    }

    /// [`Scrape::get`] for a series labelled `queue`.
    pub fn queue(&self, name: &str, queue: &str) -> Option<f64> {
        self.get(name, &[("queue", queue)])
    }

    /// Whether any series of `name` (any labels) is present.
    pub fn has(&self, name: &str) -> bool {
        self.samples.keys().any(|k| k == name || k.starts_with(&format!("{name}{{")))
    }
}
