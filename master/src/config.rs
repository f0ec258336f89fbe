//! The master's configuration: the `[master]` section of the shared config file, plus the
//! shared `[nats]` and `[streams]` sections. See `docs/architecture.md` for what each timing
//! means and `docs/configuration.md`'s tables for the defaults.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use jetwork_shared::clock::millis;
use jetwork_shared::config::{self, ConfigError, LogConfig, NatsConfig, StreamsConfig};
use serde::{Deserialize, Serialize};

use jetwork_shared::{Login, QueueName};

use crate::core::policy::{Backoff, LoginRules, QueueRules};
use crate::core::Policy;

/// Everything `jetwork-master` reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MasterSettings {
    pub nats: NatsConfig,
    pub streams: StreamsConfig,
    pub master: MasterConfig,
    pub log: LogConfig,
    /// Per-queue retry rules (`[queues.<name>]`), over the `[master]` defaults.
    pub queues: BTreeMap<String, QueueConfig>,
    /// The worker logins (`[logins.<name>]`): when any is configured, workers must register
    /// under one of them (`docs/security.md`, "Worker logins").
    pub logins: BTreeMap<String, LoginConfig>,
}

/// A `[logins.<name>]` section: what the workers logged in as NATS user `<name>` may do.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoginConfig {
    /// The queues its workers may serve (`["*"]`: any). Required: a login serves nothing it
    /// was not given.
    pub queues: Vec<String>,
    /// Most of its workers registered at once (`master.max_workers_per_login` when absent).
    pub max_workers: Option<u32>,
    /// Most attempts one of its workers holds at once (`master.max_slots_per_worker` when
    /// absent).
    pub max_slots: Option<u32>,
}

/// A `[queues.<name>]` section: what this queue does differently from the `[master]` defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    pub max_attempts: Option<u32>,
    #[serde(with = "humantime_serde")]
    pub work_timeout: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub backoff_initial: Option<Duration>,
    pub backoff_factor: Option<f64>,
    #[serde(with = "humantime_serde")]
    pub backoff_max: Option<Duration>,
    pub backoff_jitter: Option<bool>,
    /// Most attempts of this queue running at once across all workers (no limit when absent).
    pub concurrency: Option<u32>,
    /// Most attempts of this queue started per second (no limit when absent).
    pub rate: Option<u32>,
}

/// The `[master]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MasterConfig {
    /// A name for this candidate in logs, the lease and `status` (a random suffix is added).
    pub id: String,
    /// How long the lease lasts without renewal: the longest a crashed leader blocks a
    /// takeover. Every candidate must use the same value. At least 2s; 10s or more on an R3
    /// cluster, where a JetStream leader change can stall renewals for ~4s.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// An attempt without result or progress for this long is re-queued.
    #[serde(with = "humantime_serde")]
    pub work_timeout: Duration,
    /// A worker not heard from for this long is forgotten and its work re-queued.
    #[serde(with = "humantime_serde")]
    pub worker_timeout: Duration,
    /// Hand-outs per work item before it ends as `failed`.
    pub max_attempts: u32,
    /// After a failed attempt, the wait before the next one: `backoff_initial` after the
    /// first failure, times `backoff_factor` after each further one, at most `backoff_max`;
    /// with `backoff_jitter`, drawn between half of that and all of it. `0s` retries at once.
    #[serde(with = "humantime_serde")]
    pub backoff_initial: Duration,
    pub backoff_factor: f64,
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    pub backoff_jitter: bool,
    /// How often deadlines and worker liveness are checked.
    #[serde(with = "humantime_serde")]
    pub tick_interval: Duration,
    /// Submissions read ahead per queue beyond the free worker slots.
    pub prefetch: u32,
    /// Submissions read ahead beyond the free worker slots over all served queues together,
    /// shared out evenly: each queue reads ahead `max(prefetch, prefetch_shared / served
    /// queues)`. With one busy queue its reader stays further ahead of fast workers; with
    /// many, each gets `prefetch` and the master's memory grows no more than before.
    pub prefetch_shared: u32,
    /// Most items handed out in one reply.
    pub max_grant: u32,
    /// Most workers registered at once (a new one beyond it is refused with 503).
    pub max_workers: u32,
    /// Most queues one worker may serve.
    pub max_queues_per_worker: u32,
    /// Most distinct queues served at once (each costs the leader a reader and a consumer).
    pub max_served_queues: u32,
    /// How long before an unanswered "work ready" notification is repeated.
    #[serde(with = "humantime_serde")]
    pub notify_interval: Duration,
    /// Longest a worker's request for work is held open waiting for work (long poll).
    #[serde(with = "humantime_serde")]
    pub max_request_wait: Duration,
    /// At a takeover, running attempts due before now + this are due then instead: their
    /// workers re-send the results they could not deliver while no master led.
    #[serde(with = "humantime_serde")]
    pub takeover_grace: Duration,
    /// A snapshot is written after this many journaled events (with more than 10 000 items in
    /// flight, at least twice as many as there are items: a snapshot costs in proportion to
    /// the state)…
    pub snapshot_every: u64,
    /// …or after this long with any events, whichever comes first.
    #[serde(with = "humantime_serde")]
    pub snapshot_interval: Duration,
    /// How often finished submissions and old journal history are purged.
    #[serde(with = "humantime_serde")]
    pub purge_interval: Duration,
    /// How often the leader checks the streams for writes, purges and setting changes made by
    /// anyone else (`master/src/integrity.rs`).
    #[serde(with = "humantime_serde")]
    pub integrity_interval: Duration,
    /// Events gathered while a journal write is in flight before the next write goes out
    /// without waiting for it (group commit); also the most inputs taken in one go.
    pub max_batch: usize,
    /// Most journal writes awaiting acknowledgement at once.
    pub max_inflight_writes: usize,
    /// Answer workers' requests for work and reports as soon as they are decided, before the
    /// journal write that records the decision is acknowledged (while at most one write is in
    /// flight and fewer than `max_batch` events wait; never an answer naming an item on its
    /// last attempt). A leader that dies before the write lands leaves grants and accepted
    /// results it never recorded: their jobs run again.
    /// `false`: every answer waits for its write (one journal round trip more per job).
    pub early_replies: bool,
    /// Address of the HTTP listener for `/metrics`, `/healthz` and `/readyz` (e.g.
    /// `0.0.0.0:9100`); none when absent (the default).
    pub metrics_listen: Option<SocketAddr>,
    /// Most connections the `metrics_listen` listener serves at once; beyond it a new one is
    /// answered 503 and closed at once (anyone who reaches it could otherwise hold idle
    /// connections until the process runs out of file descriptors).
    pub http_max_connections: usize,
    /// Most recurring schedules at once (adding one more is refused with 503).
    pub max_schedules: u32,
    /// Largest payload a recurring schedule may submit with each tick, in bytes.
    pub max_schedule_payload: u32,
    /// Shortest gap allowed between two ticks of a recurring schedule.
    #[serde(with = "humantime_serde")]
    pub schedule_min_interval: Duration,
    /// Most bytes per second all schedules together may submit at their peak (each tick's
    /// payload plus its overhead, over its schedule's shortest gap); adding a schedule that
    /// would go beyond it is refused with 503.
    pub max_schedule_bytes_per_second: u64,
    /// Most priority submissions of one queue taken out of turn, ahead of its unread backlog,
    /// and not yet reached by its reader (each costs its payload in memory, like read-ahead);
    /// beyond it, priority submissions wait for their turn. Also the most expiring submissions
    /// taken out of turn in all the queues nobody serves. 0 turns jumps off.
    pub max_priority_jumps: u32,
    /// Most workers registered under one login at once (a `[logins.<name>]` section may say
    /// otherwise); a new one beyond it is refused with 503.
    pub max_workers_per_login: u32,
    /// Most attempts one worker holds at once, whatever capacity it declares (a
    /// `[logins.<name>]` section may say otherwise).
    pub max_slots_per_worker: u32,
    /// Attempts a worker may hold at first: one more with each of its outcomes accepted,
    /// half as many when one of its attempts misses its deadline.
    pub initial_window: u32,
    /// Most items of one queue waiting out a delay or a back-off. At the limit the queue's
    /// reader stops reading (nothing stored is refused; its later submissions, delayed or
    /// not, stay in the stream until some of the waiting ones fall due or finish).
    pub max_waiting_per_queue: u64,
    /// Most items waiting out a delay or a back-off across all queues; at the limit every
    /// queue's reader stops reading (as above).
    pub max_waiting: u64,
    /// Payloads of items that wait (delayed, backing off) are not kept in memory; those of
    /// the items falling due within this long are read back from the stream ahead of their
    /// hand-out, so a due job does not wait on a stream read.
    #[serde(with = "humantime_serde")]
    pub read_ahead_horizon: Duration,
    /// Most payloads read back ahead of their hand-out and not started yet (0: none; each
    /// grant then reads its own).
    pub max_read_ahead_payloads: u32,
    /// Most bytes of those payloads.
    pub max_read_ahead_bytes: u64,
}

impl Default for MasterConfig {
    fn default() -> Self {
        MasterConfig {
            id: "master".to_owned(),
            lease_ttl: Duration::from_secs(10),
            work_timeout: Duration::from_secs(10),
            worker_timeout: Duration::from_secs(30),
            max_attempts: 5,
            backoff_initial: Duration::from_secs(1),
            backoff_factor: 2.0,
            backoff_max: Duration::from_secs(60),
            backoff_jitter: true,
            tick_interval: Duration::from_millis(100),
            prefetch: 256,
            prefetch_shared: 1024,
            max_grant: 256,
            max_workers: 10_000,
            max_queues_per_worker: 64,
            max_served_queues: 1_000,
            notify_interval: Duration::from_secs(1),
            max_request_wait: Duration::from_secs(30),
            takeover_grace: Duration::from_secs(3),
            snapshot_every: 50_000,
            snapshot_interval: Duration::from_secs(60),
            purge_interval: Duration::from_secs(2),
            integrity_interval: Duration::from_secs(1),
            max_batch: 1024,
            max_inflight_writes: 64,
            early_replies: true,
            metrics_listen: None,
            http_max_connections: 256,
            max_schedules: 1_000,
            max_schedule_payload: 64 * 1024,
            schedule_min_interval: Duration::from_secs(1),
            max_schedule_bytes_per_second: 1 << 20,
            max_priority_jumps: 1_000,
            max_workers_per_login: 100,
            max_slots_per_worker: 1_000,
            initial_window: 16,
            max_waiting_per_queue: 200_000,
            max_waiting: 1_000_000,
            read_ahead_horizon: Duration::from_secs(2),
            max_read_ahead_payloads: 4_096,
            max_read_ahead_bytes: 8 << 20,
        }
    }
}

impl MasterSettings {
    /// Loads defaults, the optional file and `JETWORK_*` overrides, then validates.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let settings: MasterSettings = config::load(file, &[])?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks the rules serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.nats.validate()?;
        self.streams.validate()?;
        let m = &self.master;
        let rule = |ok: bool, text: &str| {
            if ok {
                Ok(())
            } else {
                Err(ConfigError::Rule(text.to_owned()))
            }
        };
        rule(m.lease_ttl >= Duration::from_secs(2), "master.lease_ttl must be at least 2s")?;
        rule(
            m.work_timeout >= Duration::from_millis(100),
            "master.work_timeout must be at least 100ms",
        )?;
        rule(
            m.worker_timeout >= Duration::from_millis(200),
            "master.worker_timeout must be at least 200ms",
        )?;
        rule(m.max_attempts >= 1, "master.max_attempts must be at least 1")?;
        rule(m.http_max_connections >= 1, "master.http_max_connections must be at least 1")?;
        rule(!m.tick_interval.is_zero(), "master.tick_interval must be positive")?;
        rule(m.max_grant >= 1, "master.max_grant must be at least 1")?;
        rule(
            m.max_workers >= 1 && m.max_queues_per_worker >= 1 && m.max_served_queues >= 1,
            "master.max_workers, max_queues_per_worker and max_served_queues must be at least 1",
        )?;
        rule(
            m.integrity_interval >= Duration::from_millis(100),
            "master.integrity_interval must be at least 100ms",
        )?;
        rule(
            m.max_batch >= 1 && m.max_inflight_writes >= 1,
            "master.max_batch and max_inflight_writes must be at least 1",
        )?;
        rule(
            m.schedule_min_interval >= Duration::from_secs(1),
            "master.schedule_min_interval must be at least 1s (ticks fall on whole seconds)",
        )?;
        // A tick is a submission: one larger than the submit stream takes could never be stored.
        rule(
            m.max_schedule_payload <= self.streams.max_payload,
            "master.max_schedule_payload must not exceed streams.max_payload",
        )?;
        rule(m.id.len() <= 64 && !m.id.is_empty(), "master.id must be 1 to 64 characters")?;
        rule(
            m.backoff_factor >= 1.0 && m.backoff_factor.is_finite(),
            "master.backoff_factor must be a number of at least 1",
        )?;
        for (name, q) in &self.queues {
            QueueName::parse(name)
                .map_err(|e| ConfigError::Rule(format!("[queues.{name}]: {e}")))?;
            let bad = |what: &str| ConfigError::Rule(format!("queues.{name}.{what}"));
            if q.max_attempts == Some(0) {
                return Err(bad("max_attempts must be at least 1"));
            }
            if q.work_timeout.is_some_and(|t| t < Duration::from_millis(100)) {
                return Err(bad("work_timeout must be at least 100ms"));
            }
            if q.backoff_factor.is_some_and(|f| f < 1.0 || !f.is_finite()) {
                return Err(bad("backoff_factor must be a number of at least 1"));
            }
            if q.concurrency == Some(0) {
                return Err(bad("concurrency must be at least 1 (pause a queue to stop it)"));
            }
            if q.rate == Some(0) || q.rate.is_some_and(|r| r > 1_000_000) {
                return Err(bad("rate must be 1..=1000000 starts per second"));
            }
        }
        rule(
            m.max_workers_per_login >= 1 && m.max_slots_per_worker >= 1 && m.initial_window >= 1,
            "master.max_workers_per_login, max_slots_per_worker and initial_window must be at least 1",
        )?;
        self.validate_logins()
    }

    /// Checks the `[logins.<name>]` sections: valid names that cannot own each other's worker
    /// ids, valid queues (at least one), limits of at least 1.
    fn validate_logins(&self) -> Result<(), ConfigError> {
        let mut seen: Vec<Login> = Vec::new();
        for (name, l) in &self.logins {
            let bad = |what: String| ConfigError::Rule(format!("[logins.{name}]: {what}"));
            let login = Login::parse(name).map_err(|e| bad(e.to_string()))?;
            if let Some(other) = seen.iter().find(|other| other.overlaps(&login)) {
                return Err(bad(format!(
                    "overlaps login {other}: worker id {} would belong to both (a login owns \
                     <login> and <login>-…); rename one",
                    name.as_str().max(other.as_str())
                )));
            }
            if l.queues.is_empty() {
                return Err(bad(
                    "queues must list the queues its workers may serve (or \"*\")".to_owned()
                ));
            }
            for queue in l.queues.iter().filter(|q| *q != "*") {
                QueueName::parse(queue).map_err(|e| bad(format!("queues: {e}")))?;
            }
            if l.max_workers == Some(0) || l.max_slots == Some(0) {
                return Err(bad("max_workers and max_slots must be at least 1".to_owned()));
            }
            seen.push(login);
        }
        Ok(())
    }

    /// The back-off of the `[master]` section.
    fn backoff(&self) -> Backoff {
        let m = &self.master;
        Backoff {
            initial: millis(m.backoff_initial),
            factor: m.backoff_factor,
            max: millis(m.backoff_max.max(m.backoff_initial)),
            jitter: m.backoff_jitter,
        }
    }

    /// The logins' rules (`validate` refused names and queues that do not parse).
    fn login_rules(&self) -> BTreeMap<Login, LoginRules> {
        let mut rules = BTreeMap::new();
        for (name, l) in &self.logins {
            let Ok(login) = Login::parse(name) else { continue };
            let any = l.queues.iter().any(|q| q == "*");
            let queues = (!any).then(|| l.queues.iter().filter_map(|q| QueueName::parse(q).ok()));
            let own = LoginRules {
                queues: queues.map(Iterator::collect),
                max_workers: l.max_workers,
                max_slots: l.max_slots,
            };
            rules.insert(login, own);
        }
        rules
    }

    /// The per-queue rules, each over the defaults for what it does not set.
    fn queue_rules(&self) -> BTreeMap<QueueName, QueueRules> {
        let defaults = self.backoff();
        let mut rules = BTreeMap::new();
        for (name, q) in &self.queues {
            // `validate` refused the names that do not parse.
            let Ok(queue) = QueueName::parse(name) else { continue };
            let changes_backoff = q.backoff_initial.is_some()
                || q.backoff_factor.is_some()
                || q.backoff_max.is_some()
                || q.backoff_jitter.is_some();
            let backoff = changes_backoff.then(|| {
                let initial = q.backoff_initial.map_or(defaults.initial, millis);
                Backoff {
                    initial,
                    factor: q.backoff_factor.unwrap_or(defaults.factor),
                    max: q.backoff_max.map_or(defaults.max, millis).max(initial),
                    jitter: q.backoff_jitter.unwrap_or(defaults.jitter),
                }
            });
            let own = QueueRules {
                max_attempts: q.max_attempts,
                work_timeout: q.work_timeout.map(millis),
                backoff,
                concurrency: q.concurrency,
                rate: q.rate,
            };
            rules.insert(queue, own);
        }
        rules
    }

    /// The engine policy these settings give.
    pub fn policy(&self) -> Policy {
        let m = &self.master;
        Policy {
            work_timeout: millis(m.work_timeout),
            worker_timeout: millis(m.worker_timeout),
            max_attempts: m.max_attempts,
            backoff: self.backoff(),
            queues: self.queue_rules(),
            max_grant: m.max_grant,
            max_result: u64::from(self.streams.max_result),
            notify_interval: millis(m.notify_interval),
            max_request_wait: millis(m.max_request_wait),
            takeover_grace: millis(m.takeover_grace),
            max_workers: m.max_workers,
            max_queues_per_worker: m.max_queues_per_worker,
            max_served_queues: m.max_served_queues,
            max_schedules: m.max_schedules,
            max_schedule_payload: u64::from(m.max_schedule_payload),
            schedule_min_interval: millis(m.schedule_min_interval),
            max_schedule_bytes_per_second: m.max_schedule_bytes_per_second,
            max_priority_jumps: m.max_priority_jumps,
            max_waiting_per_queue: m.max_waiting_per_queue,
            max_waiting: m.max_waiting,
            logins: self.login_rules(),
            max_workers_per_login: m.max_workers_per_login,
            max_slots_per_worker: m.max_slots_per_worker,
            initial_window: m.initial_window,
            ..Policy::default()
        }
    }
}
