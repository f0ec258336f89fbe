//! Failover: under a steady load, `kill -9` the leading master, then (with a standby again)
//! stop the next leader with SIGTERM. For each: how long until a job submitted after the
//! signal starts running (the new leader dispatching), the longest pause between job starts,
//! when the last job submitted before the signal started (in the run whose result was stored:
//! a job the dying leader accepted early, before recording it, runs again under the next one),
//! and at the end the jobs lost (acknowledged submissions without a stored result), checked
//! with the same journal and results audit the integration tests use.

use std::time::Duration;

use indicatif::MultiProgress;
use jetwork_shared::WorkId;
use jetwork_tests::Audit;

use crate::cluster::{await_standby, System};
use crate::deployment::Deployment;
use crate::load::{Collector, Paced};
use crate::report::Report;
use crate::{bar, stamp, Options};

/// Load kept steady before, between and after the two failovers.
const STEADY: Duration = Duration::from_secs(2);

pub async fn run(o: &Options, report: &mut Report, progress: &MultiProgress) -> anyhow::Result<()> {
    let bar = progress.add(bar(4, "failover (steps)"));
    let mut d = Deployment::start(System::Jetwork, 2, 64, o.lease_ttl).await?;
    let standby = d.cluster.master("m2")?;
    await_standby(&standby).await?;
    d.masters.push(standby);
    let collector = Collector::start(&d.cluster.client, &d.results_subject()).await?;
    let producer = Paced::start(d.cluster.js(), d.submit_subject(), o.failover_rate);
    tokio::time::sleep(STEADY).await;
    bar.inc(1);

    let kill = interrupt(&mut d, &collector, o, Stop::Kill).await?;
    bar.inc(1);
    // A standby again, for the graceful handover.
    let standby = d.cluster.master("m3")?;
    await_standby(&standby).await?;
    d.masters.push(standby);
    tokio::time::sleep(STEADY).await;
    let term = interrupt(&mut d, &collector, o, Stop::Terminate).await?;
    bar.inc(1);
    tokio::time::sleep(STEADY).await;
    let submitted = producer.stop().await?;
    let hidden = indicatif::ProgressBar::hidden();
    collector.wait_for(submitted.acked.len() as u64, Duration::from_secs(60), &hidden).await?;
    let audit = Audit::read(&d.cluster.js()).await?;
    audit.check()?;
    let lost = submitted
        .acked
        .iter()
        .filter(|seq| {
            WorkId::parse(&format!("seq-{seq}")).map_or(true, |id| !audit.results.contains_key(&id))
        })
        .count();
    bar.inc(1);
    bar.finish();

    // In the stored result's run: a job whose completion the killed leader accepted early and
    // never recorded runs again under the next one, as soon as a worker takes its new grant.
    let last_start = |at: u64| {
        let last = collector.read(|c| {
            c.stamps.iter().filter(|(submitted, _)| *submitted < at).map(|(_, s)| *s).max()
        });
        last.map_or(0.0, |started| started.saturating_sub(at) as f64 / 1e9)
    };
    let (kill_last, term_last) = (last_start(kill.at), last_start(term.at));

    let ttl = o.lease_ttl.as_secs_f64();
    let phase = format!("failover at {}/s (lease TTL {ttl} s)", o.failover_rate);
    let pause = kill.longest_pause;
    report
        .add(&phase, "kill -9 leader: dispatch pause", "s", Some(pause), None)
        .target(&format!("≤ TTL + 1 s = {} s", ttl + 1.0), pause <= ttl + 1.0);
    let first = kill.resumed_after;
    report.add(&phase, "kill -9: first job submitted after it starts", "s", Some(first), None);
    report
        .add(&phase, "kill -9: last job submitted before it starts", "s", Some(kill_last), None)
        .target(&format!("≤ TTL + 1 s = {} s", ttl + 1.0), kill_last <= ttl + 1.0);
    let pause = term.longest_pause;
    report
        .add(&phase, "SIGTERM handover: dispatch pause", "s", Some(pause), None)
        .target("≤ 0.5 s", pause <= 0.5);
    let first = term.resumed_after;
    report.add(&phase, "SIGTERM: first job submitted after it starts", "s", Some(first), None);
    report.add(&phase, "SIGTERM: last job submitted before it starts", "s", Some(term_last), None);
    report
        .add(
            &phase,
            &format!(
                "jobs lost of {} acknowledged ({} unacknowledged)",
                submitted.acked.len(),
                submitted.failed
            ),
            "jobs",
            Some(lost as f64),
            None,
        )
        .target("0", lost == 0);
    Ok(())
}

/// What one interruption cost.
struct Interruption {
    /// When the signal was sent (ns since the epoch, as the stamps).
    at: u64,
    /// From the signal until a job submitted after it started (includes the wait behind jobs
    /// queued during the pause).
    resumed_after: f64,
    /// The longest gap between consecutive job starts from 1 s before the signal to 1 s after
    /// dispatching resumed: how long nothing was handed out (at 1k/s normal gaps are ~1 ms).
    longest_pause: f64,
}

/// How the leader is stopped.
enum Stop {
    /// `kill -9`: the lease must expire.
    Kill,
    /// SIGTERM: the leader hands over (releases the lease) and exits.
    Terminate,
}

/// Stops the leading master and measures until dispatching resumes.
async fn interrupt(
    d: &mut Deployment,
    collector: &Collector,
    o: &Options,
    stop: Stop,
) -> anyhow::Result<Interruption> {
    let status = d.cluster.await_leader(0, 2).await?;
    let index = d
        .masters
        .iter()
        .position(|m| status.leader.starts_with(&format!("{}-", m.name())))
        .ok_or_else(|| anyhow::anyhow!("leader {} is none of the masters", status.leader))?;
    let at = stamp::now_ns();
    let leader = &mut d.masters[index];
    match stop {
        Stop::Kill => leader.kill9()?,
        Stop::Terminate => {
            if !leader.terminate(Duration::from_secs(10)).await? {
                anyhow::bail!("the leader did not exit within 10 s of SIGTERM");
            }
        }
    }
    let within = o.lease_ttl + Duration::from_secs(30);
    let resumed = jetwork_tests::poll_for("dispatching after the failover", within, || async {
        collector
            .read(|c| c.stamps.iter().filter(|(s, _)| *s > at).map(|(_, started)| *started).min())
    })
    .await?;
    d.masters.remove(index);
    // Let the results of the second after the resumption arrive.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut starts: Vec<u64> = collector.read(|c| {
        c.stamps
            .iter()
            .map(|(_, started)| *started)
            .filter(|s| *s + 1_000_000_000 >= at && *s <= resumed + 1_000_000_000)
            .collect()
    });
    starts.sort_unstable();
    let longest = starts.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    Ok(Interruption {
        at,
        resumed_after: resumed.saturating_sub(at) as f64 / 1e9,
        longest_pause: longest as f64 / 1e9,
    })
}
