//! [`RawClient`]: a NATS client that writes protocol bytes by hand, so a test can publish what
//! a well-behaved client library refuses to (header values that are not UTF-8, header lines
//! without a colon, broken version lines), as any program with a socket can.

use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A raw protocol connection.
pub struct RawClient {
    stream: BufReader<TcpStream>,
}

impl RawClient {
    /// Connects to `url` (`nats://host:port`) and says `CONNECT` with headers enabled.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        Self::connect_as(url, None).await
    }

    /// [`Self::connect`] as the NATS user `user` with `password`.
    pub async fn connect_as(url: &str, user: Option<(&str, &str)>) -> anyhow::Result<Self> {
        let addr = url.split_once("://").map_or(url, |(_, rest)| rest);
        let stream =
            TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
        let mut client = RawClient { stream: BufReader::new(stream) };
        let mut info = String::new();
        client.stream.read_line(&mut info).await?;
        anyhow::ensure!(info.starts_with("INFO "), "expected INFO, got {info:?}");
        let mut connect = serde_json::json!({
            "verbose": false, "pedantic": false, "headers": true, "no_responders": true,
            "name": "raw",
        });
        if let Some((user, password)) = user {
            connect["user"] = user.into();
            connect["pass"] = password.into();
        }
        client.write(format!("CONNECT {connect}\r\n").as_bytes()).await?;
        client.ping().await?;
        Ok(client)
    }

    async fn write(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.stream.get_mut().write_all(bytes).await?;
        Ok(())
    }

    /// Publishes `payload` on `subject` with `header` as the raw header block (it should end
    /// with an empty line, `\r\n\r\n`, to be a block at all), then waits for the server to have
    /// processed it (PING/PONG).
    pub async fn hpub(
        &mut self,
        subject: &str,
        header: &[u8],
        payload: &[u8],
    ) -> anyhow::Result<()> {
        let line = format!("HPUB {subject} {} {}\r\n", header.len(), header.len() + payload.len());
        let mut frame = line.into_bytes();
        frame.extend_from_slice(header);
        frame.extend_from_slice(payload);
        frame.extend_from_slice(b"\r\n");
        self.write(&frame).await?;
        self.ping().await
    }

    /// Publishes `payload` on `subject` without headers, then waits as [`Self::hpub`] does.
    pub async fn publish(&mut self, subject: &str, payload: &[u8]) -> anyhow::Result<()> {
        let mut frame = format!("PUB {subject} {}\r\n", payload.len()).into_bytes();
        frame.extend_from_slice(payload);
        frame.extend_from_slice(b"\r\n");
        self.write(&frame).await?;
        self.ping().await
    }

    /// Subscribes to `subject`, then waits as [`Self::hpub`] does (a subscription the user may
    /// not make is refused with an `-ERR`, returned as an error).
    pub async fn subscribe(&mut self, subject: &str, sid: u32) -> anyhow::Result<()> {
        self.write(format!("SUB {subject} {sid}\r\n").as_bytes()).await?;
        self.ping().await
    }

    /// Round-trips a PING: everything sent before it has been processed. An `-ERR` the server
    /// sent meanwhile is returned as an error (after the PONG, so the next call starts clean).
    pub async fn ping(&mut self) -> anyhow::Result<()> {
        self.write(b"PING\r\n").await?;
        let mut error = None;
        loop {
            let mut line = String::new();
            let read =
                tokio::time::timeout(Duration::from_secs(10), self.stream.read_line(&mut line))
                    .await
                    .context("waiting for PONG")??;
            anyhow::ensure!(read > 0, "the server closed the connection ({error:?})");
            if line.starts_with("PONG") {
                return match error {
                    None => Ok(()),
                    Some(error) => Err(anyhow::anyhow!("server: {error}")),
                };
            }
            if line.starts_with("-ERR") {
                error.get_or_insert_with(|| line.trim().to_owned());
            }
        }
    }
}
