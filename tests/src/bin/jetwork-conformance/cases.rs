//! [`Case`]: the protocol's hard cases, each a script for the [`FakeMaster`] against a fresh
//! worker process, and what the worker must do. Every case also holds the worker to the
//! ledger's standing rules (tokens, results, silence after an attempt ends, capacity).
//!
//! Each case is proven able to fail: `tests/tests/conformance.rs` runs it against a Python
//! worker broken in the one way the case is about (`worker/python/tests/conformance_worker.py
//! --break <mode>`) and expects it to fail.

use std::time::Duration;

use jetwork_shared::protocol::{Assignment, OutcomeStatus, VerdictKind};
use jetwork_shared::Token;

use crate::fake_master::{FakeMaster, Plan, Seen};

/// How long the worker may take for what the protocol leaves to its timers.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// To send an unanswered outcome again (its `resend_interval`, with room to spare).
    pub resend_within: Duration,
    /// To do what the protocol says to do "at once" (register after a confirmed election or
    /// a 404, report a finished job). Must be well below the worker's `register_interval`,
    /// or a heartbeat could pass for a reaction.
    pub react_within: Duration,
}

/// How long a job may take to come back when nothing gets in its way.
const JOB_WITHIN: Duration = Duration::from_secs(10);
/// Long enough for a worker's first registrations to be over (some register twice as they
/// start), so that a registration after it is a reaction, not a start-up's.
const SETTLE: Duration = Duration::from_millis(1500);
/// The timeout of the attempts the cases hand out, unless a case needs a short one.
const TIMEOUT: Duration = Duration::from_secs(30);

/// One hard case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    CompletesWithItsToken,
    ResendsUntilAVerdict,
    EveryVerdictEndsTheResends,
    SupersededStopsTheAttempt,
    RevokeStopsTheAttempt,
    IgnoresARevokeFromAnotherEpoch,
    IgnoresAStaleEpoch,
    IgnoresAnUnconfirmedEpoch,
    IgnoresAForgedElection,
    FollowsAConfirmedElectionMidReport,
    RunsAgainForANewLeader,
    RegistersAgainWhenForgotten,
    StaysWithinItsCapacity,
    DrainsAndDeregistersOnSigterm,
}

impl Case {
    /// Every case, in the order they run.
    pub const ALL: [Case; 14] = [
        Case::CompletesWithItsToken,
        Case::ResendsUntilAVerdict,
        Case::EveryVerdictEndsTheResends,
        Case::SupersededStopsTheAttempt,
        Case::RevokeStopsTheAttempt,
        Case::IgnoresARevokeFromAnotherEpoch,
        Case::IgnoresAStaleEpoch,
        Case::IgnoresAnUnconfirmedEpoch,
        Case::IgnoresAForgedElection,
        Case::FollowsAConfirmedElectionMidReport,
        Case::RunsAgainForANewLeader,
        Case::RegistersAgainWhenForgotten,
        Case::StaysWithinItsCapacity,
        Case::DrainsAndDeregistersOnSigterm,
    ];

    /// Its name on the command line and in the report.
    pub fn name(self) -> &'static str {
        match self {
            Case::CompletesWithItsToken => "completes-with-its-token",
            Case::ResendsUntilAVerdict => "resends-until-a-verdict",
            Case::EveryVerdictEndsTheResends => "every-verdict-ends-the-resends",
            Case::SupersededStopsTheAttempt => "superseded-stops-the-attempt",
            Case::RevokeStopsTheAttempt => "revoke-stops-the-attempt",
            Case::IgnoresARevokeFromAnotherEpoch => "ignores-a-revoke-from-another-epoch",
            Case::IgnoresAStaleEpoch => "ignores-a-stale-epoch",
            Case::IgnoresAnUnconfirmedEpoch => "ignores-an-unconfirmed-epoch",
            Case::IgnoresAForgedElection => "ignores-a-forged-election",
            Case::FollowsAConfirmedElectionMidReport => "follows-a-confirmed-election-mid-report",
            Case::RunsAgainForANewLeader => "runs-again-for-a-new-leader",
            Case::RegistersAgainWhenForgotten => "registers-again-when-forgotten",
            Case::StaysWithinItsCapacity => "stays-within-its-capacity",
            Case::DrainsAndDeregistersOnSigterm => "drains-and-deregisters-on-sigterm",
        }
    }

    /// What the worker must do, in a line.
    pub fn rule(self) -> &'static str {
        match self {
            Case::CompletesWithItsToken => {
                "runs a granted job and reports its result with the attempt's token"
            }
            Case::ResendsUntilAVerdict => {
                "sends an outcome again when the verdict is lost, and stops once one comes"
            }
            Case::EveryVerdictEndsTheResends => "stops re-sending on `finished` and `rejected` too",
            Case::SupersededStopsTheAttempt => {
                "stops running an attempt whose progress is answered `superseded`"
            }
            Case::RevokeStopsTheAttempt => {
                "stops a running attempt revoked by the leader it follows, and never reports it"
            }
            Case::IgnoresARevokeFromAnotherEpoch => {
                "ignores revokes from an older or unconfirmed epoch"
            }
            Case::IgnoresAStaleEpoch => "ignores a reply from an older epoch (a deposed master)",
            Case::IgnoresAnUnconfirmedEpoch => {
                "ignores a reply claiming a newer epoch that the lease does not name"
            }
            Case::IgnoresAForgedElection => {
                "does not follow an announced epoch that the lease does not name"
            }
            Case::FollowsAConfirmedElectionMidReport => {
                "follows a confirmed new leader at once: registers, re-sends the unanswered outcome"
            }
            Case::RunsAgainForANewLeader => {
                "runs an attempt it already finished again when a new leader grants it again \
                 (under a token of its own, or the recorded one), and reports it with that token"
            }
            Case::RegistersAgainWhenForgotten => "registers at once when a request gets 404",
            Case::StaysWithinItsCapacity => {
                "never asks for more than its capacity, however many it is granted at a time"
            }
            Case::DrainsAndDeregistersOnSigterm => {
                "on SIGTERM finishes what runs, reports it, deregisters and exits"
            }
        }
    }

    /// Looks a case up by name.
    pub fn named(name: &str) -> Option<Case> {
        Case::ALL.into_iter().find(|c| c.name() == name)
    }

    /// Plays the case against a worker that has just registered with `m`.
    pub async fn run(self, m: &mut FakeMaster, t: Timing) -> anyhow::Result<()> {
        let epoch = m.epoch();
        match self {
            Case::CompletesWithItsToken => {
                let a = m.job("token-1", 0.0, TIMEOUT)?;
                m.offer(epoch, vec![a]);
                completed(m, "token-1", JOB_WITHIN).await?;
                // Its slot is free again: it asks for work.
                m.until(t.react_within, "a request for work after the verdict", |s, _| {
                    matches!(s, Seen::Request(r) if r.slots > 0).then_some(())
                })
                .await
            }
            Case::ResendsUntilAVerdict => {
                m.plan("lost-1", Plan::LoseFirstReply);
                let a = m.job("lost-1", 0.0, TIMEOUT)?;
                m.offer(epoch, vec![a]);
                completed(m, "lost-1", JOB_WITHIN).await?;
                completions(m, "lost-1", 2, t.resend_within).await.map_err(|e| {
                    e.context("the completed outcome whose verdict was lost, sent again")
                })?;
                // Accepted now: no more copies (the ledger fails any after the verdict).
                m.serve_for(t.resend_within).await
            }
            Case::EveryVerdictEndsTheResends => {
                m.plan("finished-1", Plan::Verdict(VerdictKind::Finished));
                m.plan("rejected-1", Plan::Verdict(VerdictKind::Rejected));
                let (f, r) =
                    (m.job("finished-1", 0.0, TIMEOUT)?, m.job("rejected-1", 0.0, TIMEOUT)?);
                m.offer(epoch, vec![f]);
                m.offer(epoch, vec![r]);
                completed(m, "finished-1", JOB_WITHIN).await?;
                completed(m, "rejected-1", JOB_WITHIN).await?;
                m.serve_for(t.resend_within).await
            }
            Case::SupersededStopsTheAttempt => {
                // A job longer than its timeout: the worker must send progress for it.
                m.plan("superseded-1", Plan::Verdict(VerdictKind::Superseded));
                let a = m.job("superseded-1", 6.0, Duration::from_secs(2))?;
                m.offer(epoch, vec![a]);
                m.until(JOB_WITHIN, "progress for a job longer than its 2 s timeout", |s, _| {
                    s.outcomes_about("superseded-1")
                        .contains(&OutcomeStatus::Progress)
                        .then_some(())
                })
                .await?;
                // The ledger fails any outcome about it from now on (the job would end at 6 s).
                m.serve_for(Duration::from_secs(8)).await
            }
            Case::RevokeStopsTheAttempt => {
                let a = m.job("revoked-1", 5.0, TIMEOUT)?;
                m.offer(epoch, vec![a.clone()]);
                started(m, "revoked-1").await?;
                m.revoke(&a, epoch).await?;
                m.serve_for(Duration::from_secs(7)).await
            }
            Case::IgnoresARevokeFromAnotherEpoch => {
                let a = m.job("kept-1", 2.0, TIMEOUT)?;
                m.offer(epoch, vec![a.clone()]);
                started(m, "kept-1").await?;
                m.revoke(&a, epoch - 1).await?;
                m.revoke(&a, epoch + 3).await?;
                completed(m, "kept-1", JOB_WITHIN).await
            }
            Case::IgnoresAStaleEpoch => {
                m.offer(epoch - 1, vec![m.job("stale-1", 0.0, TIMEOUT)?]);
                m.offer(epoch, vec![m.job("current-1", 0.0, TIMEOUT)?]);
                completed(m, "current-1", JOB_WITHIN).await?;
                m.serve_for(Duration::from_secs(1)).await
            }
            Case::IgnoresAnUnconfirmedEpoch => {
                m.offer(epoch + 4, vec![m.job("forged-1", 0.0, TIMEOUT)?]);
                m.offer(epoch, vec![m.job("current-1", 0.0, TIMEOUT)?]);
                // Had it followed the forged epoch, it would now ignore the real leader.
                completed(m, "current-1", JOB_WITHIN).await?;
                m.serve_for(Duration::from_secs(1)).await
            }
            Case::IgnoresAForgedElection => {
                m.announce(epoch + 5).await?;
                m.serve_for(Duration::from_millis(1500)).await?;
                m.offer(epoch, vec![m.job("current-1", 0.0, TIMEOUT)?]);
                completed(m, "current-1", JOB_WITHIN).await
            }
            Case::FollowsAConfirmedElectionMidReport => {
                m.serve_for(SETTLE).await?;
                m.plan("orphan-1", Plan::NeverReply);
                m.offer(epoch, vec![m.job("orphan-1", 0.0, TIMEOUT)?]);
                completed(m, "orphan-1", JOB_WITHIN).await?;
                // The leader dies with the report unanswered; a new one is elected.
                m.plan("orphan-1", Plan::Verdict(VerdictKind::Accepted));
                let sent = m.completions("orphan-1");
                m.elect(epoch + 1).await?;
                m.until(t.react_within, "a registration with the new leader", |s, _| {
                    matches!(s, Seen::Register(_)).then_some(())
                })
                .await?;
                completions(m, "orphan-1", sent + 1, t.resend_within)
                    .await
                    .map_err(|e| e.context("the unanswered outcome, sent to the new leader"))?;
                // The deposed leader's late grant is ignored; the new one's is run.
                m.offer(epoch, vec![m.job("deposed-1", 0.0, TIMEOUT)?]);
                m.offer(epoch + 1, vec![m.job("new-1", 0.0, TIMEOUT)?]);
                completed(m, "new-1", JOB_WITHIN).await?;
                m.serve_for(Duration::from_secs(1)).await
            }
            Case::RunsAgainForANewLeader => {
                // A leader accepts two outcomes (early, before recording it) and dies. The next
                // one knows nothing of the first job and hands its attempt out under a token of
                // its own; it knows the second one's grant (recorded) but not its end, so it
                // holds it as the worker's and hands it out again as it was.
                let first = m.job("regranted-1", 0.0, TIMEOUT)?;
                let second = m.job("regranted-2", 0.0, TIMEOUT)?;
                m.offer(epoch, vec![first.clone(), second.clone()]);
                completed(m, "regranted-1", JOB_WITHIN).await?;
                completed(m, "regranted-2", JOB_WITHIN).await?;
                m.serve_for(Duration::from_millis(500)).await?;
                m.elect(epoch + 1).await?;
                m.until(t.react_within, "a registration with the new leader", |s, _| {
                    matches!(s, Seen::Register(_)).then_some(())
                })
                .await?;
                let again = Assignment { token: Token::random(), ..first };
                m.offer(epoch + 1, vec![again, second]);
                // The ledger fails an outcome about the first under its old token from now on.
                for id in ["regranted-1", "regranted-2"] {
                    completions(m, id, 2, JOB_WITHIN)
                        .await
                        .map_err(|e| e.context(format!("{id}, granted again, run again")))?;
                }
                m.serve_for(Duration::from_secs(1)).await
            }
            Case::RegistersAgainWhenForgotten => {
                m.serve_for(SETTLE).await?;
                m.refuse_next_request(404, "unknown worker: register first");
                m.until(JOB_WITHIN, "a request for work", |s, _| {
                    matches!(s, Seen::Request(_)).then_some(())
                })
                .await?;
                m.until(t.react_within, "a registration after the 404", |s, _| {
                    matches!(s, Seen::Register(_)).then_some(())
                })
                .await?;
                m.offer(epoch, vec![m.job("after-404", 0.0, TIMEOUT)?]);
                completed(m, "after-404", JOB_WITHIN).await
            }
            Case::StaysWithinItsCapacity => {
                // Full: one short job whose verdict is lost, the rest long. Until that outcome
                // has a verdict its slot is not free (it is asked for in the lost report); a
                // worker that counted only running jobs would ask for it again. One job per
                // reply and more jobs than slots: every request is checked against what it holds.
                let capacity = m.capacity();
                m.plan("slot-0", Plan::LoseFirstReply);
                m.offer(epoch, vec![m.job("slot-0", 0.2, TIMEOUT)?]);
                let ids: Vec<String> = (1..capacity + 3).map(|n| format!("slot-{n}")).collect();
                for id in &ids {
                    m.offer(epoch, vec![m.job(id, 2.0, TIMEOUT)?]);
                }
                completions(m, "slot-0", 2, t.resend_within + JOB_WITHIN).await?;
                for id in &ids {
                    completed(m, id, JOB_WITHIN * 2).await?;
                }
                Ok(())
            }
            Case::DrainsAndDeregistersOnSigterm => {
                m.offer(epoch, vec![m.job("draining-1", 2.0, TIMEOUT)?]);
                started(m, "draining-1").await?;
                m.terminate()?;
                completed(m, "draining-1", JOB_WITHIN).await?;
                m.until(JOB_WITHIN + t.resend_within, "a deregistration", |s, _| {
                    matches!(s, Seen::Deregister(_)).then_some(())
                })
                .await?;
                let deadline = tokio::time::Instant::now() + JOB_WITHIN;
                while !m.exited() {
                    if tokio::time::Instant::now() >= deadline {
                        anyhow::bail!(
                            "still running {} s after deregistering",
                            JOB_WITHIN.as_secs()
                        );
                    }
                    m.serve_for(Duration::from_millis(100)).await?;
                }
                Ok(())
            }
        }
    }
}

/// Waits until a completed outcome about `work_id` has arrived.
async fn completed(m: &mut FakeMaster, work_id: &str, within: Duration) -> anyhow::Result<()> {
    completions(m, work_id, 1, within).await
}

/// Waits until `n` completed outcomes about `work_id` have arrived (re-sends included).
async fn completions(
    m: &mut FakeMaster,
    work_id: &str,
    n: usize,
    within: Duration,
) -> anyhow::Result<()> {
    let what = format!("completed outcome {n} about {work_id}");
    m.wait(within, &what, |m| m.completions(work_id) >= n).await
}

/// Serves until `work_id` has been handed out, and then a moment for it to start.
async fn started(m: &mut FakeMaster, work_id: &str) -> anyhow::Result<()> {
    let what = format!("a request {work_id} is granted in");
    m.wait(JOB_WITHIN, &what, |m| m.granted(work_id)).await?;
    m.serve_for(Duration::from_millis(800)).await
}
