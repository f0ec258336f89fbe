//! [`InProcess`]: the one way an integration test sets up its scenario, so that a test reads as
//! set up, phases, audit. [`InProcess::build`] describes it ([`Setup`]): which nats-server
//! (fresh, or from a configuration file's text), which settings (the fast test settings,
//! tuned), which master candidates start with it and over which link (direct, or through a
//! [`FaultProxy`]), and which connection reads the streams back for the audit. The running
//! scenario then starts whatever else the test needs: more masters, workers (tuned, or behind
//! a proxy), proxies, and real processes ([`Procs`]).
//!
//! It owns the server, the settings, the frontend client and the masters it started; dropping
//! it aborts those masters and then stops the server.

use std::time::Duration;

use async_nats::jetstream;
use bytes::Bytes;
use jetwork_frontend::{Client, WorkResult};
use jetwork_master::MasterSettings;
use jetwork_shared::{connect, subjects, QueueName, WorkId};
use jetwork_worker::{Handler, WorkerSettings};

use crate::inproc::{spawn_master, spawn_master_with, spawn_worker, spawn_worker_with, Task};
use crate::{
    fast_settings, init_logging, local_listener, wait_until, Audit, Fast, FaultProxy, NatsServer,
    Procs, Scraper,
};

/// How long [`Setup::client_after_streams`] waits for the master to create the streams.
const STREAMS_WITHIN: Duration = Duration::from_secs(30);

type Tune = Box<dyn FnOnce(&mut Fast) + Send>;

/// What a scenario starts with; [`Setup::start`] starts it.
#[must_use]
pub struct Setup {
    config: Option<String>,
    tunes: Vec<Tune>,
    masters: Vec<String>,
    through_proxy: bool,
    audit_as: Option<(String, String)>,
    client_after_streams: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            config: None,
            tunes: Vec::new(),
            masters: vec!["m1".to_owned()],
            through_proxy: false,
            audit_as: None,
            client_after_streams: false,
        }
    }
}

impl Setup {
    /// Runs nats-server with the configuration file text `conf` (authorization, TLS…).
    pub fn config(mut self, conf: &str) -> Self {
        self.config = Some(conf.to_owned());
        self
    }

    /// Adjusts the fast test settings (applied in order, before anything connects).
    pub fn tune(mut self, tune: impl FnOnce(&mut Fast) + Send + 'static) -> Self {
        self.tunes.push(Box::new(tune));
        self
    }

    /// The master candidates started with the scenario, in this order (default: `m1`; none
    /// for a scenario whose masters come later, or are processes).
    pub fn masters(mut self, names: &[&str]) -> Self {
        self.masters = names.iter().map(|n| (*n).to_owned()).collect();
        self
    }

    /// Connects the scenario's masters through one [`FaultProxy`]
    /// ([`InProcess::master_link`]), so a test can fault the masters' link alone.
    pub fn through_proxy(mut self) -> Self {
        self.through_proxy = true;
        self
    }

    /// Reads the streams back (the audit, [`InProcess::js`]) as the NATS user `user`, for a
    /// server whose frontend user may not read the journal.
    pub fn audit_as(mut self, user: &str, password: &str) -> Self {
        self.audit_as = Some((user.to_owned(), password.to_owned()));
        self
    }

    /// Connects the frontend client only once a master has created the streams (a frontend
    /// user that may not create them would otherwise start before they exist).
    pub fn client_after_streams(mut self) -> Self {
        self.client_after_streams = true;
        self
    }

    /// Starts the server, the masters and the frontend client.
    pub async fn start(self) -> anyhow::Result<InProcess> {
        init_logging();
        let server = match &self.config {
            Some(conf) => NatsServer::start_with_config(conf)?,
            None => NatsServer::start()?,
        };
        let mut fast = fast_settings(&server.url());
        for tune in self.tunes {
            tune(&mut fast);
        }
        let master_link =
            if self.through_proxy { Some(FaultProxy::start(&server.url()).await?) } else { None };
        let mut settings = fast.master.clone();
        if let Some(proxy) = &master_link {
            settings.nats.url = proxy.url();
        }
        let masters =
            self.masters.iter().map(|name| spawn_master(name, settings.clone())).collect();
        let js = match &self.audit_as {
            Some((user, password)) => {
                let nats = async_nats::ConnectOptions::with_user_and_password(
                    user.clone(),
                    password.clone(),
                )
                .connect(server.url())
                .await?;
                Some(jetstream::new(nats))
            }
            None => None,
        };
        if self.client_after_streams {
            let js = match &js {
                Some(js) => js.clone(),
                None => jetstream::new(server.connect().await?),
            };
            wait_until("the master to create the streams", STREAMS_WITHIN, || async {
                js.get_stream(subjects::RESULTS_STREAM).await.is_ok()
            })
            .await?;
        }
        let client = Client::connect(fast.frontend.clone()).await?;
        let js = js.unwrap_or_else(|| connect::jetstream(client.nats(), &fast.frontend.nats));
        Ok(InProcess {
            fast,
            client,
            js,
            queue: QueueName::default_queue(),
            masters,
            master_link,
            server,
        })
    }
}

/// A running scenario.
pub struct InProcess {
    /// The settings every component started from here uses.
    pub fast: Fast,
    /// A frontend client connected with `fast.frontend`.
    pub client: Client,
    /// The JetStream context the audit reads with.
    pub js: jetstream::Context,
    /// The queue `submit` uses: `default`.
    pub queue: QueueName,
    /// The masters started with the scenario ([`Setup::masters`]).
    masters: Vec<Task>,
    master_link: Option<FaultProxy>,
    /// Last, so that it outlives every component when the scenario is dropped.
    pub server: NatsServer,
}

impl InProcess {
    /// Describes a scenario: a fresh server, the fast settings and a master `m1`, unless told
    /// otherwise.
    pub fn build() -> Setup {
        Setup::default()
    }

    /// The common scenario: a fresh server and master `m1` with the fast settings, adjusted
    /// by `tune`.
    pub async fn start(tune: impl FnOnce(&mut Fast) + Send + 'static) -> anyhow::Result<Self> {
        Self::build().tune(tune).start().await
    }

    /// The proxy the scenario's masters connect through ([`Setup::through_proxy`]).
    pub fn master_link(&self) -> anyhow::Result<&FaultProxy> {
        self.master_link.as_ref().ok_or_else(|| anyhow::anyhow!("the masters were set up direct"))
    }

    /// A new proxy in front of the server, for one more component's link.
    pub async fn proxy(&self) -> anyhow::Result<FaultProxy> {
        FaultProxy::start(&self.server.url()).await
    }

    /// Starts another master candidate, connected directly.
    pub fn master(&self, name: &str) -> Task {
        spawn_master(name, self.fast.master.clone())
    }

    /// Starts another master candidate serving metrics and probes on a free loopback port.
    pub async fn master_observed(&self, name: &str) -> anyhow::Result<(Task, Scraper)> {
        let (listener, addr) = local_listener().await?;
        Ok((spawn_master_with(name, self.fast.master.clone(), Some(listener)), Scraper { addr }))
    }

    /// Starts a worker serving metrics and probes on a free loopback port.
    pub async fn worker_observed<H: Handler>(
        &self,
        name: &str,
        handler: H,
    ) -> anyhow::Result<(Task, Scraper)> {
        let (listener, addr) = local_listener().await?;
        let task = spawn_worker_with(name, self.fast.worker.clone(), handler, Some(listener));
        Ok((task, Scraper { addr }))
    }

    /// Starts a worker whose settings `tune` adjusts, serving metrics and probes on a free
    /// loopback port.
    pub async fn worker_observed_with<H: Handler>(
        &self,
        name: &str,
        tune: impl FnOnce(&mut WorkerSettings),
        handler: H,
    ) -> anyhow::Result<(Task, Scraper)> {
        let (listener, addr) = local_listener().await?;
        let mut settings = self.fast.worker.clone();
        tune(&mut settings);
        let task = spawn_worker_with(name, settings, handler, Some(listener));
        Ok((task, Scraper { addr }))
    }

    /// Starts another master candidate, connected through `proxy`.
    pub fn master_via(&self, name: &str, proxy: &FaultProxy) -> Task {
        let mut settings: MasterSettings = self.fast.master.clone();
        settings.nats.url = proxy.url();
        spawn_master(name, settings)
    }

    /// Starts a worker named `name` running `handler`.
    pub fn worker<H: Handler>(&self, name: &str, handler: H) -> Task {
        spawn_worker(name, self.fast.worker.clone(), handler)
    }

    /// Starts a worker whose settings `tune` adjusts (concurrency, credentials, a proxy's URL).
    pub fn worker_with<H: Handler>(
        &self,
        name: &str,
        tune: impl FnOnce(&mut WorkerSettings),
        handler: H,
    ) -> Task {
        let mut settings = self.fast.worker.clone();
        tune(&mut settings);
        spawn_worker(name, settings, handler)
    }

    /// A launcher for the real binaries against this server, with the fast settings.
    pub fn procs(&self) -> anyhow::Result<Procs> {
        Procs::new(&self.server)
    }

    /// Submits `payload` under `id` to the default queue.
    pub async fn submit(&self, id: &str, payload: &'static [u8]) -> anyhow::Result<WorkId> {
        let id = WorkId::parse(id)?;
        self.client.submit(&self.queue, Some(id.clone()), Bytes::from_static(payload)).await?;
        Ok(id)
    }

    /// Waits (up to `within`) for the result of `id` in the default queue.
    pub async fn result(&self, id: &WorkId, within: Duration) -> anyhow::Result<WorkResult> {
        Ok(self.client.wait_result(&self.queue, id, within).await?)
    }

    /// Waits (up to `within`) until the leader's status names a candidate called `name`.
    pub async fn await_leader(&self, name: &str, within: Duration) -> anyhow::Result<()> {
        let what = format!("{name} to lead");
        let client = &self.client;
        wait_until(&what, within, || async {
            // The status names the leader `<id>-<suffix>`.
            client.status().await.is_ok_and(|s| s.leader.starts_with(name))
        })
        .await
    }

    /// What the server says of stream `name` now, if it answers (for waits on its state or
    /// settings).
    pub async fn stream_info(&self, name: &str) -> Option<jetstream::stream::Info> {
        self.js.get_stream(name).await.ok().map(|stream| stream.cached_info().clone())
    }

    /// The audit: reads the journal and the results and submit streams and checks the
    /// invariants.
    pub async fn audit(&self) -> anyhow::Result<Audit> {
        let audit = Audit::read(&self.js).await?;
        audit.check()?;
        Ok(audit)
    }

    /// The audit once every id in `ids` has a result (waiting up to `within`), which must be
    /// a completion.
    pub async fn completed(&self, ids: &[WorkId], within: Duration) -> anyhow::Result<Audit> {
        Audit::await_completed(&self.js, ids, within).await
    }

    /// Crashes the masters the scenario started (no goodbye, as a dead process).
    pub fn crash_masters(&mut self) {
        self.masters.drain(..).for_each(Task::crash);
    }

    /// Stops the masters the scenario started, cleanly (they hand the lease over).
    pub async fn stop_masters(&mut self) {
        for master in self.masters.drain(..) {
            master.stop().await;
        }
    }

    /// Stops the masters cleanly, then everything else.
    pub async fn stop(mut self) {
        self.stop_masters().await;
    }
}
