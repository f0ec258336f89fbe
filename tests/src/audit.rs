//! [`Audit`]: reads the journal, the results stream and the submit stream back and checks what
//! every test asserts at the end: the journal's epochs never go backwards (no deposed master
//! wrote after its successor's claim), no work id is finished twice while in flight, every run
//! of a work id has exactly one stored result, no stored submission is taken twice (in turn
//! and out of turn), no queue's read position moved past a stored submission that was
//! neither accepted nor rejected, and (per test) every acknowledged
//! submission has a result.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context as _};
use async_nats::jetstream::{
    self,
    consumer::{pull::OrderedConfig, DeliverPolicy},
};
use futures::StreamExt;
use jetwork_frontend::{Client, FrontendSettings};
use jetwork_master::core::{Event, JournalBatch};
use jetwork_shared::{codec, connect, headers, subjects, WorkId};

/// One stored result.
#[derive(Debug, Clone)]
pub struct StoredResult {
    /// The run (submission) it belongs to.
    pub submit_seq: u64,
    pub status: String,
    pub attempt: u32,
    pub payload: Vec<u8>,
}

/// What the journal and results stream hold.
#[derive(Debug, Default)]
pub struct Audit {
    /// Every journaled event with its stream sequence and epoch.
    pub events: Vec<(u64, u64, Event)>,
    /// The epoch header of every journal message, in stream order.
    pub epochs: Vec<(u64, u64)>,
    /// Snapshots seen (first part's sequence).
    pub snapshots: usize,
    /// Results by work id (several entries would be a bug).
    pub results: BTreeMap<WorkId, Vec<StoredResult>>,
    /// Rejection notices stored.
    pub rejections: usize,
    /// The reason of each stored rejection, by the rejected submission's sequence.
    pub rejected: BTreeMap<u64, String>,
    /// Journal messages that are not the leader's (unreadable batches published by others).
    pub foreign: usize,
    /// Whether the journal still starts at sequence 1 (nothing purged), so every decision
    /// ever made is in `events`.
    pub journal_complete: bool,
    /// Submissions still stored: (sequence, queue).
    pub submissions: Vec<(u64, String)>,
}

impl Audit {
    /// Reads both streams in full.
    pub async fn read(js: &jetstream::Context) -> anyhow::Result<Audit> {
        let mut audit = Audit::default();
        let journal = read_stream(js, subjects::JOURNAL_STREAM).await?;
        audit.journal_complete = journal.first().is_none_or(|(seq, ..)| *seq == 1);
        for (seq, subject, headers, payload) in journal {
            let epoch = header(&headers, headers::EPOCH).and_then(|e| e.parse().ok()).unwrap_or(0);
            audit.epochs.push((seq, epoch));
            match subject.as_str() {
                subjects::JOURNAL_EVENTS | subjects::JOURNAL_EPOCH => {
                    match codec::decode::<JournalBatch>(&payload) {
                        Ok(batch) => {
                            audit.events.extend(batch.events.into_iter().map(|e| (seq, epoch, e)))
                        }
                        Err(_) => audit.foreign += 1,
                    }
                }
                subjects::JOURNAL_SNAPSHOT => audit.snapshots += 1,
                _ => {}
            }
        }
        for (seq, subject, _, _) in read_stream(js, subjects::SUBMIT_STREAM).await? {
            if let Some((queue, _)) = subjects::queue_of_submission(&subject) {
                audit.submissions.push((seq, queue.to_owned()));
            }
        }
        for (_, subject, headers, payload) in read_stream(js, subjects::RESULTS_STREAM).await? {
            if subject.starts_with(subjects::REJECTED_PREFIX) {
                audit.rejections += 1;
                let seq = header(&headers, headers::SUBMIT_SEQ).and_then(|s| s.parse().ok());
                let reason = header(&headers, headers::REASON).unwrap_or_default();
                if audit.rejected.insert(seq.unwrap_or(0), reason).is_some() {
                    bail!("two rejection notices for submission {seq:?}");
                }
                continue;
            }
            let id = subject.rsplit('.').next().context("result subject")?;
            let result = StoredResult {
                submit_seq: header(&headers, headers::SUBMIT_SEQ)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0),
                status: header(&headers, headers::STATUS).unwrap_or_default(),
                attempt: header(&headers, headers::ATTEMPT)
                    .and_then(|a| a.parse().ok())
                    .unwrap_or(0),
                payload,
            };
            audit.results.entry(WorkId::parse(id)?).or_default().push(result);
        }
        Ok(audit)
    }

    /// Connects as a frontend with `settings` (which creates the streams if they are missing,
    /// as any frontend does) and reads the streams back: the audit of a test that set up no
    /// more than a server, through a connection of its own kind (credentials, TLS).
    pub async fn read_as(settings: FrontendSettings) -> anyhow::Result<Audit> {
        let client = Client::connect(settings).await?;
        let js = connect::jetstream(client.nats(), &client.settings().nats);
        Audit::read(&js).await
    }

    /// Waits until every id in `ids` has a stored result, then checks the invariants and that
    /// each of them completed; returns the audit.
    pub async fn await_completed(
        js: &jetstream::Context,
        ids: &[WorkId],
        within: Duration,
    ) -> anyhow::Result<Audit> {
        let what = format!("{} results", ids.len());
        crate::wait_until(&what, within, || async {
            Audit::read(js).await.is_ok_and(|a| ids.iter().all(|id| a.results.contains_key(id)))
        })
        .await?;
        let audit = Audit::read(js).await?;
        audit.check()?;
        audit.expect_completed(ids)?;
        Ok(audit)
    }

    /// The invariants every test asserts.
    pub fn check(&self) -> anyhow::Result<()> {
        let mut last = 0;
        // Foreign messages carry no epoch header; only the leader's writes are checked.
        for &(seq, epoch) in self.epochs.iter().filter(|(_, e)| *e > 0) {
            if epoch < last {
                bail!("journal message {seq} has epoch {epoch} after epoch {last}: a deposed master wrote");
            }
            last = epoch;
        }
        // Per id: true while in flight, false once finished. With a trimmed journal an item's
        // acceptance may be gone while its finish is still there.
        let mut in_flight: BTreeMap<&WorkId, bool> = BTreeMap::new();
        let mut finished: BTreeMap<&WorkId, usize> = BTreeMap::new();
        for (seq, _, event) in &self.events {
            match event {
                Event::WorkAccepted { work_id, .. }
                    if in_flight.insert(work_id, true) == Some(true) =>
                {
                    bail!("{work_id} accepted twice while in flight (message {seq})");
                }
                Event::WorkCompleted { work_id, .. }
                | Event::WorkFailed { work_id, .. }
                | Event::WorkCancelled { work_id, .. } => {
                    match in_flight.insert(work_id, false) {
                        Some(true) => {}
                        None if !self.journal_complete => {}
                        _ => bail!(
                            "{work_id} finished twice, or without being accepted (message {seq})"
                        ),
                    }
                    *finished.entry(work_id).or_default() += 1;
                }
                _ => {}
            }
        }
        for (work_id, results) in &self.results {
            let mut runs: Vec<u64> = results.iter().map(|r| r.submit_seq).collect();
            runs.sort_unstable();
            if runs.windows(2).any(|w| w[0] == w[1]) {
                bail!("{work_id} has two stored results for one submission: {runs:?}");
            }
        }
        for (work_id, times) in &finished {
            let stored = self.results.get(*work_id).map_or(0, Vec::len);
            // Fewer finishes than results is fine: older history may have been purged.
            if *times > stored {
                bail!("{work_id} finished {times} times but has {stored} stored results");
            }
        }
        self.check_cursors()
    }

    /// No queue's cursor moved past a stored submission the journal neither accepted nor
    /// rejected (the master only purges submissions below its cursor once they are done, so
    /// a stored one at or below it must have been taken). Needs the whole journal.
    fn check_cursors(&self) -> anyhow::Result<()> {
        if !self.journal_complete {
            return Ok(());
        }
        let mut cursors: BTreeMap<String, u64> = BTreeMap::new();
        let mut taken = std::collections::BTreeSet::new();
        for (message, _, event) in &self.events {
            let (queue, seq, in_turn) = match event {
                Event::WorkAccepted { queue, seq, jumped, .. } => (queue, seq, !jumped),
                Event::SubmissionRejected { queue, seq, .. } => (queue, seq, true),
                // The reader reached a submission taken out of turn: the cursor moves only.
                Event::SubmissionPassed { queue, seq } => {
                    let cursor = cursors.entry(queue.to_string()).or_default();
                    *cursor = (*cursor).max(*seq);
                    continue;
                }
                _ => continue,
            };
            if !taken.insert(*seq) {
                bail!("submission {seq} taken twice (journal message {message})");
            }
            if in_turn {
                let cursor = cursors.entry(queue.to_string()).or_default();
                *cursor = (*cursor).max(*seq);
            }
        }
        let skipped: Vec<&(u64, String)> = self
            .submissions
            .iter()
            .filter(|(seq, queue)| {
                cursors.get(queue).is_some_and(|c| seq <= c) && !taken.contains(seq)
            })
            .collect();
        if !skipped.is_empty() {
            bail!("the read position moved past submissions never taken: {skipped:?}");
        }
        Ok(())
    }

    /// Every stored submission the journal took has exactly one stored outcome: its run's
    /// result (`Jetwork-Submit-Seq` = its sequence) if it was accepted, its rejection if it was
    /// refused. For a test that let every accepted run finish; needs the whole journal.
    pub fn expect_one_outcome_each(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.journal_complete, "the journal was trimmed");
        for (_, _, event) in &self.events {
            match event {
                Event::WorkAccepted { work_id, seq, .. } => {
                    let runs = self.results.get(work_id).map(Vec::as_slice).unwrap_or_default();
                    let stored = runs.iter().filter(|r| r.submit_seq == *seq).count();
                    if stored != 1 || self.rejected.contains_key(seq) {
                        bail!("submission {seq} ({work_id}) has {stored} stored results: {runs:?}");
                    }
                }
                Event::SubmissionRejected { seq, .. } if !self.rejected.contains_key(seq) => {
                    bail!("submission {seq} was rejected, but no rejection is stored");
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Ids finished in the journal.
    pub fn finished(&self) -> Vec<WorkId> {
        self.events
            .iter()
            .filter_map(|(_, _, e)| match e {
                Event::WorkCompleted { work_id, .. }
                | Event::WorkFailed { work_id, .. }
                | Event::WorkCancelled { work_id, .. } => Some(work_id.clone()),
                _ => None,
            })
            .collect()
    }

    /// Attempts started for `work_id`.
    pub fn attempts(&self, work_id: &WorkId) -> Vec<u32> {
        self.events
            .iter()
            .filter_map(|(_, _, e)| match e {
                Event::WorkStarted { work_id: id, attempt, .. } if id == work_id => Some(*attempt),
                _ => None,
            })
            .collect()
    }

    /// Asserts every id in `expected` has exactly one completed result (and nothing else).
    pub fn expect_completed(&self, expected: &[WorkId]) -> anyhow::Result<()> {
        let missing: Vec<_> =
            expected.iter().filter(|id| !self.results.contains_key(*id)).collect();
        if !missing.is_empty() {
            bail!(
                "{} acknowledged items have no result: {:?}",
                missing.len(),
                &missing[..missing.len().min(10)]
            );
        }
        for id in expected {
            let status = &self.results[id][0].status;
            if status != headers::STATUS_COMPLETED {
                bail!("{id} ended {status}");
            }
        }
        Ok(())
    }
}

fn header(headers: &Option<async_nats::HeaderMap>, name: &str) -> Option<String> {
    headers.as_ref()?.get(name).map(|v| v.as_str().to_owned())
}

type Stored = (u64, String, Option<async_nats::HeaderMap>, Vec<u8>);

/// Every message of a stream, in order.
pub async fn read_stream(js: &jetstream::Context, name: &str) -> anyhow::Result<Vec<Stored>> {
    let mut stream = js.get_stream(name).await.with_context(|| format!("stream {name}"))?;
    let state = stream.info().await?.state.clone();
    let mut out = Vec::new();
    if state.messages == 0 {
        return Ok(out);
    }
    let consumer = stream
        .create_consumer(OrderedConfig { deliver_policy: DeliverPolicy::All, ..Default::default() })
        .await?;
    let mut messages = consumer.messages().await?;
    let (mut last_seen, mut quiet) = (0, Duration::ZERO);
    const PATIENCE: Duration = Duration::from_secs(10);
    const LOOK: Duration = Duration::from_millis(500);
    loop {
        let Ok(next) = tokio::time::timeout(LOOK, messages.next()).await else {
            // A master may purge as it goes (the submit stream below its cursor, the journal
            // behind a snapshot): when what was left to read is gone, there is nothing more.
            let now = stream.info().await?.state.clone();
            if now.first_sequence > state.last_sequence || now.last_sequence <= last_seen {
                break;
            }
            quiet += LOOK;
            anyhow::ensure!(quiet < PATIENCE, "stream {name}: nothing after {last_seen} in 10 s");
            continue;
        };
        let Some(message) = next else { break };
        let message = message?;
        let seq = message.info().map_err(|e| anyhow::anyhow!(e))?.stream_sequence;
        out.push((
            seq,
            message.subject.to_string(),
            message.headers.clone(),
            message.payload.to_vec(),
        ));
        (last_seen, quiet) = (seq, Duration::ZERO);
        if seq >= state.last_sequence {
            break;
        }
    }
    Ok(out)
}
