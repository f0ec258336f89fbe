//! Load for both systems: [`flood`] submits as fast as acknowledgements allow (a window of
//! them outstanding), [`Paced`] at a fixed rate (until stopped, or a given count);
//! [`Collector`] listens to the results and keeps what the figures need (count, time of the
//! last one, latencies, start times).

use std::collections::VecDeque;
use std::future::IntoFuture;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, context::PublishAckFuture};
use async_nats::HeaderMap;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use indicatif::ProgressBar;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::samples::Samples;
use crate::stamp;

/// Submits `jobs` jobs to `subject` as fast as the server acknowledges them, with at most
/// `window` acknowledgements outstanding.
pub async fn flood(
    js: &jetstream::Context,
    subject: &str,
    jobs: u64,
    window: usize,
    bar: &ProgressBar,
) -> anyhow::Result<()> {
    flood_with(js, subject, None, jobs, window, bar).await
}

/// [`flood`], each submission carrying `headers` when given (job options).
pub async fn flood_with(
    js: &jetstream::Context,
    subject: &str,
    headers: Option<&HeaderMap>,
    jobs: u64,
    window: usize,
    bar: &ProgressBar,
) -> anyhow::Result<()> {
    let spread = Spread { subjects: &[subject.to_owned()], headers, size: 0 };
    flood_spread(js, &spread, jobs, window, bar).await
}

/// Where a flood goes and what it carries.
pub struct Spread<'a> {
    /// Submissions go to each subject in turn (work spread evenly over queues).
    pub subjects: &'a [String],
    /// Job options carried by every submission.
    pub headers: Option<&'a HeaderMap>,
    /// Each payload's size in bytes (at least the stamp's; see [`stamp::payload_sized`]).
    pub size: usize,
}

/// [`flood`] as `spread` says.
pub async fn flood_spread(
    js: &jetstream::Context,
    spread: &Spread<'_>,
    jobs: u64,
    window: usize,
    bar: &ProgressBar,
) -> anyhow::Result<()> {
    anyhow::ensure!(!spread.subjects.is_empty(), "a flood needs a subject");
    let mut acks: VecDeque<PublishAckFuture> = VecDeque::new();
    for n in 1..=jobs {
        let subject = spread.subjects[(n as usize - 1) % spread.subjects.len()].clone();
        let payload = stamp::payload_sized(spread.size);
        let ack = match spread.headers {
            Some(headers) => js.publish_with_headers(subject, headers.clone(), payload).await?,
            None => js.publish(subject, payload).await?,
        };
        acks.push_back(ack);
        if acks.len() >= window.max(1) {
            if let Some(ack) = acks.pop_front() {
                ack.into_future().await?;
            }
        }
        if n % 1024 == 0 {
            bar.set_position(n);
        }
    }
    for ack in acks {
        ack.into_future().await?;
    }
    bar.set_position(jobs);
    Ok(())
}

/// A producer submitting at a fixed rate in the background until stopped.
pub struct Paced {
    stop: tokio::sync::watch::Sender<bool>,
    task: JoinHandle<anyhow::Result<Submitted>>,
}

/// What a [`Paced`] producer submitted.
#[derive(Debug, Default)]
pub struct Submitted {
    /// Stream sequences of the acknowledged submissions.
    pub acked: Vec<u64>,
    /// Submissions that got no acknowledgement (not acknowledged, so not owed a result).
    pub failed: u64,
}

impl Paced {
    /// Starts submitting `rate` jobs per second to `subject`.
    pub fn start(js: jetstream::Context, subject: String, rate: u64) -> Self {
        Self::spawn(js, subject, rate, None, u64::MAX, ProgressBar::hidden())
    }

    /// Submits `jobs` jobs at `rate` a second to `subject`, each carrying `headers` (job
    /// options), then stops by itself; [`Paced::stop`] waits for that.
    pub fn count(
        js: jetstream::Context,
        subject: String,
        rate: u64,
        headers: HeaderMap,
        jobs: u64,
        bar: ProgressBar,
    ) -> Self {
        Self::spawn(js, subject, rate, Some(headers), jobs, bar)
    }

    fn spawn(
        js: jetstream::Context,
        subject: String,
        rate: u64,
        headers: Option<HeaderMap>,
        jobs: u64,
        bar: ProgressBar,
    ) -> Self {
        let rate = rate.max(1);
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            // Acknowledgements are awaited by a second task, so a slow one never delays the
            // next submission.
            // `None`: the publish itself failed.
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Option<PublishAckFuture>>();
            let acks = tokio::spawn(async move {
                let mut submitted = Submitted::default();
                // Awaited together: each one's timeout runs from when it is first awaited, so
                // awaiting in turn acknowledgements a fault lost (a frozen stream leader) would
                // take one timeout each.
                let mut pending = FuturesUnordered::new();
                let mut open = true;
                while open || !pending.is_empty() {
                    tokio::select! {
                        ack = rx.recv(), if open => match ack {
                            Some(Some(ack)) => pending.push(ack.into_future()),
                            Some(None) => submitted.failed += 1,
                            None => open = false,
                        },
                        Some(done) = pending.next(), if !pending.is_empty() => match done {
                            Ok(ack) => submitted.acked.push(ack.sequence),
                            Err(_) => submitted.failed += 1,
                        },
                    }
                }
                submitted
            });
            let began = Instant::now();
            let mut sent = 0u64;
            while !*stopped.borrow() && sent < jobs {
                let due = ((began.elapsed().as_secs_f64() * rate as f64) as u64).min(jobs);
                while sent < due {
                    sent += 1;
                    let (subject, payload) = (subject.clone(), stamp::payload());
                    let ack = match &headers {
                        Some(h) => js.publish_with_headers(subject, h.clone(), payload).await,
                        None => js.publish(subject, payload).await,
                    };
                    let _ = tx.send(ack.ok());
                }
                bar.set_position(sent);
                if sent >= jobs {
                    break;
                }
                let next = began + Duration::from_secs_f64((sent + 1) as f64 / rate as f64);
                tokio::select! {
                    _ = tokio::time::sleep_until(next) => {}
                    _ = stopped.changed() => {}
                }
            }
            bar.set_position(sent);
            drop(tx);
            Ok(acks.await?)
        });
        Paced { stop, task }
    }

    /// Stops and returns what was submitted (once every acknowledgement is in).
    pub async fn stop(self) -> anyhow::Result<Submitted> {
        let _ = self.stop.send(true);
        self.task.await?
    }

    /// Waits until a [`Paced::count`] producer has sent all its jobs; returns what was
    /// submitted (once every acknowledgement is in).
    pub async fn finish(self) -> anyhow::Result<Submitted> {
        self.task.await?
    }
}

/// What the results told so far.
#[derive(Debug, Default)]
pub struct Collected {
    pub count: u64,
    /// When the latest result arrived.
    pub last: Option<Instant>,
    /// Submit→start and submit→result, for jobs submitted at or after `measure_from_ns`.
    pub to_start: Samples,
    pub to_result: Samples,
    /// `(submit_ns, start_ns)` of every result, for the failover analysis.
    pub stamps: Vec<(u64, u64)>,
    /// Results whose payload was not a stamp.
    pub unreadable: u64,
}

/// Listens to results (plain NATS subscription: they are seen as soon as they are published).
pub struct Collector {
    state: Arc<Mutex<Collected>>,
    measure_from_ns: Arc<std::sync::atomic::AtomicU64>,
    task: JoinHandle<()>,
}

impl Collector {
    /// Subscribes to `subject` (and makes sure the server has the subscription).
    pub async fn start(client: &async_nats::Client, subject: &str) -> anyhow::Result<Self> {
        let mut subscription = client.subscribe(subject.to_owned()).await?;
        client.flush().await?;
        let state = Arc::new(Mutex::new(Collected::default()));
        // Nothing is measured until `measure_from_now`.
        let measure_from_ns = Arc::new(std::sync::atomic::AtomicU64::new(u64::MAX));
        let task = {
            let (state, from) = (state.clone(), measure_from_ns.clone());
            tokio::spawn(async move {
                while let Some(message) = subscription.next().await {
                    let now = stamp::now_ns();
                    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                    s.count += 1;
                    s.last = Some(Instant::now());
                    let Some((submitted, started)) = stamp::parse(&message.payload) else {
                        s.unreadable += 1;
                        continue;
                    };
                    s.stamps.push((submitted, started));
                    if submitted >= from.load(std::sync::atomic::Ordering::Relaxed) {
                        s.to_start.push(started.saturating_sub(submitted));
                        s.to_result.push(now.saturating_sub(submitted));
                    }
                }
            })
        };
        Ok(Collector { state, measure_from_ns, task })
    }

    /// Latencies count only jobs submitted from now on (ends a warm-up).
    pub fn measure_from_now(&self) {
        self.measure_from_ns.store(stamp::now_ns(), std::sync::atomic::Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).count
    }

    /// Runs `read` on what has been collected.
    pub fn read<T>(&self, read: impl FnOnce(&Collected) -> T) -> T {
        read(&self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Waits for the result of the job submitted at `submit_ns` (its payload's time); returns
    /// the time it started.
    pub async fn await_job(&self, submit_ns: u64, within: Duration) -> anyhow::Result<u64> {
        jetwork_tests::poll_for("the job's result", within, || async {
            self.read(|c| c.stamps.iter().rev().find(|s| s.0 == submit_ns).map(|s| s.1))
        })
        .await
    }

    /// Waits until `n` results have arrived, showing them on `bar`.
    pub async fn wait_for(
        &self,
        n: u64,
        within: Duration,
        bar: &ProgressBar,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let count = self.count();
            bar.set_position(count.min(n));
            if count >= n {
                return Ok(());
            }
            if Instant::now() >= deadline {
                anyhow::bail!("only {count} of {n} results within {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}
