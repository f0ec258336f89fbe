//! [`Browser`]: headless Chromium driven over WebDriver, for tests that check what a person
//! sees in the dashboard. It starts Debian's `chromedriver` (package `chromium-driver`, which
//! `scripts/test` installs with `chromium` when they are missing) on a free port and opens one
//! session through `fantoccini`; dropping it ends the session's driver process.
//!
//! Without a `chromedriver` on `PATH` (or in `CHROMEDRIVER`) [`Browser::start`] fails and
//! says how to get one, unless `JETWORK_SKIP_BROWSER=1` asks to skip (then it is `None`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use fantoccini::{Client, ClientBuilder, Locator};

use crate::nats_server::free_port;
use crate::{wait_until, Process};

/// A browser session and the driver process behind it.
pub struct Browser {
    pub client: Client,
    _driver: Process,
    _dir: tempfile::TempDir,
}

/// Where the driver binary is: `CHROMEDRIVER`, else `chromedriver` on `PATH`.
fn driver_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CHROMEDRIVER") {
        return Some(PathBuf::from(path));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths).map(|dir| dir.join("chromedriver")).find(|p| p.is_file())
    })
}

impl Browser {
    /// Starts a headless browser of `width`×`height`; `None` when asked to skip.
    pub async fn start(width: u32, height: u32) -> anyhow::Result<Option<Browser>> {
        if std::env::var("JETWORK_SKIP_BROWSER").is_ok_and(|v| v == "1") {
            return Ok(None);
        }
        let driver = driver_path().context(
            "no chromedriver on PATH: run scripts/test (it installs Debian's chromium and \
             chromium-driver), or install them, or set JETWORK_SKIP_BROWSER=1 to skip",
        )?;
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let port_arg = format!("--port={port}");
        let process = Process::start("chromedriver", &driver, &[&port_arg], &[], dir.path())?;
        let url = format!("http://127.0.0.1:{port}");
        wait_until("chromedriver to listen", Duration::from_secs(20), || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok()
        })
        .await?;
        let mut caps = serde_json::Map::new();
        let size = format!("--window-size={width},{height}");
        let profile = format!("--user-data-dir={}", dir.path().join("profile").display());
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--hide-scrollbars", size, profile],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client =
            ClientBuilder::new(connector).capabilities(caps).connect(&url).await.with_context(
                || format!("opening a browser session (driver log: {})", process.logs()),
            )?;
        Ok(Some(Browser { client, _driver: process, _dir: dir }))
    }

    /// The text of the first element matching `css`, if there is one.
    pub async fn text(&self, css: &str) -> Option<String> {
        let element = self.client.find(Locator::Css(css)).await.ok()?;
        element.text().await.ok()
    }

    /// Waits until the first element matching `css` has a text for which `ok` holds, and
    /// returns that text.
    pub async fn wait_text(
        &self,
        css: &str,
        within: Duration,
        ok: impl Fn(&str) -> bool,
    ) -> anyhow::Result<String> {
        crate::poll_for(&format!("{css} to show the expected text"), within, || async {
            self.text(css).await.filter(|t| ok(t))
        })
        .await
    }

    /// Clicks the first element matching `css`, trying again (within `within`) while there
    /// is none or it is replaced under the click: the pages re-render on every refresh.
    pub async fn click(&self, css: &str, within: Duration) -> anyhow::Result<()> {
        crate::poll_for(&format!("{css} to be clicked"), within, || async {
            let element = self.client.find(Locator::Css(css)).await.ok()?;
            element.click().await.ok()
        })
        .await
    }

    /// Ends the session (the driver process ends when this is dropped).
    pub async fn close(self) -> anyhow::Result<()> {
        self.client.close().await?;
        Ok(())
    }
}
