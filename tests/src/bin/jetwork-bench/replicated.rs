//! The `cluster` phase (opt-in): jetwork on a 3-node nats-server cluster with every stream
//! replicated three times. Throughput and latency against the raw JetStream baseline on the
//! same kind of cluster (its streams replicated too), then issue 21's fault table, each fault
//! on a fresh cluster under a steady load: master `m1` leading (given node `n1`'s URL alone),
//! `m2` standing by, two workers. For each fault: the dispatch pause (the longest gap between
//! consecutive job starts from 1 s before the fault until the load stops), jobs lost
//! (acknowledged submissions without a stored result, by the integration tests' audit) and
//! results delivered twice live, against the targets.

use std::collections::BTreeSet;
use std::time::Duration;

use indicatif::MultiProgress;
use jetwork_shared::{subjects, WorkId};
use jetwork_tests::Audit;

use crate::cluster::{await_standby, Cluster, System};
use crate::deployment::bench_queue;
use crate::load::{Collector, Paced};
use crate::report::Report;
use crate::samples::median;
use crate::throughput::Layout;
use crate::{bar, latency, stamp, throughput, Options};

/// Load kept steady before the fault and after dispatching resumed.
const STEADY: Duration = Duration::from_secs(3);

/// One fault of the table.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// `kill -9` of the node leading the journal (not `m1`'s node).
    KillJournalLeaderNode,
    /// `kill -9` of `n1`, the leading master's node (the journal led elsewhere).
    KillMastersNode,
    /// `n2` and `n3` (the journal's leader among them) down for `--cluster-down`.
    TwoNodesDown,
    /// The journal leader's node frozen (SIGSTOP) for `--cluster-freeze`.
    FreezeJournalLeaderNode,
    /// `kill -9` of the leading master.
    KillMaster,
}

pub async fn run(o: &Options, report: &mut Report, progress: &MultiProgress) -> anyhow::Result<()> {
    let phase = "cluster (3 nodes, R3)";
    let layout = Layout { workers: 2, concurrency: 64, jobs: o.cluster_jobs };
    let mut rates = [Vec::new(), Vec::new()];
    for run in 0..o.runs.max(1) {
        for (i, system) in [System::Baseline, System::Jetwork].into_iter().enumerate() {
            let label = format!("cluster throughput {system:?} run {}/{}", run + 1, o.runs);
            rates[i].push(throughput::once(system, layout, o, progress, &label, true).await?);
        }
    }
    let case = format!("throughput, 2 worker processes × concurrency 64, {} jobs", layout.jobs);
    report.add(phase, &case, "jobs/s", median(&rates[1]), median(&rates[0]));

    let rate = o.cluster_rate;
    let baseline = latency::once(System::Baseline, rate, o, progress, true).await?;
    let jetwork = latency::once(System::Jetwork, rate, o, progress, true).await?;
    for (name, p) in [("p50", 50.0), ("p99", 99.0), ("max", 100.0)] {
        let (j, b) = (jetwork.1.percentile_ms(p), baseline.1.percentile_ms(p));
        report.add(phase, &format!("submit→result {name} at {rate}/s"), "ms", j, b);
    }

    let ttl = o.cluster_lease_ttl;
    let faults = [
        (Fault::KillJournalLeaderNode, "kill -9 journal-leader node", 5.0),
        (Fault::KillMastersNode, "kill -9 leading master's node", 3.0),
        (Fault::TwoNodesDown, "two nodes down, after quorum", 3.0),
        (Fault::FreezeJournalLeaderNode, "journal-leader node frozen", ttl.as_secs_f64() + 2.0),
        (Fault::KillMaster, "kill -9 leading master", ttl.as_secs_f64() + 1.0),
    ];
    let bar = progress.add(bar(faults.len() as u64, "cluster faults"));
    let phase = format!(
        "cluster faults at {}/s (lease TTL {} s, frozen {} s, down {} s)",
        o.cluster_fault_rate,
        ttl.as_secs_f64(),
        o.cluster_freeze.as_secs_f64(),
        o.cluster_down.as_secs_f64()
    );
    for (fault, name, target) in faults {
        let cost = measure(fault, o).await?;
        report
            .add(&phase, &format!("{name}: dispatch pause"), "s", Some(cost.pause), None)
            .target(&format!("≤ {target} s"), cost.pause <= target);
        let lost = format!("{name}: jobs lost of {} acknowledged", cost.acked);
        report.add(&phase, &lost, "jobs", Some(cost.lost as f64), None).target("0", cost.lost == 0);
        let twice = format!("{name}: results delivered twice live");
        report
            .add(&phase, &twice, "results", Some(cost.twice as f64), None)
            .target("0", cost.twice == 0);
        bar.inc(1);
    }
    bar.finish();
    Ok(())
}

/// What one fault cost.
struct Cost {
    pause: f64,
    acked: usize,
    lost: usize,
    twice: usize,
}

/// Runs `fault` on a fresh cluster under load and measures it.
async fn measure(fault: Fault, o: &Options) -> anyhow::Result<Cost> {
    let mut cluster = Cluster::start_replicated(o.cluster_lease_ttl).await?;
    let n1 = cluster.nodes().map(|n| n.url(0)).ok_or_else(|| anyhow::anyhow!("no nodes"))?;
    let mut masters = vec![cluster.master_at("m1", &n1)?];
    let _workers = cluster.workers(System::Jetwork, 2, 64)?;
    cluster.await_leader(0, 2).await?;
    masters.push(cluster.master("m2")?);
    await_standby(&masters[1]).await?;
    let js = cluster.js();
    let journal = subjects::JOURNAL_STREAM;
    // The journal's leader off n1, so the node faults are the ones named.
    let leader = match cluster.nodes() {
        Some(nodes) => nodes.move_leader_off(&js, journal, 0).await?,
        None => anyhow::bail!("no nodes"),
    };
    let queue = bench_queue();
    let collector = Collector::start(&cluster.client, &subjects::results_in(&queue)).await?;
    let producer = Paced::start(js.clone(), subjects::submit(&queue), o.cluster_fault_rate);
    tokio::time::sleep(STEADY).await;

    let at = stamp::now_ns();
    let nodes = cluster.nodes().ok_or_else(|| anyhow::anyhow!("no nodes"))?;
    match fault {
        Fault::KillJournalLeaderNode => nodes.kill9(leader),
        Fault::KillMastersNode => nodes.kill9(0),
        Fault::TwoNodesDown => {
            nodes.kill9(1);
            nodes.kill9(2);
            tokio::time::sleep(o.cluster_down).await;
            nodes.restart(1).await?;
            nodes.restart(2).await?;
        }
        Fault::FreezeJournalLeaderNode => {
            nodes.freeze(leader).await?;
            tokio::time::sleep(o.cluster_freeze).await;
            nodes.resume(leader)?;
        }
        Fault::KillMaster => masters[0].kill9()?,
    }
    // Quorum is back (two nodes down) once every stream has a leader again.
    let mut measure_from = at.saturating_sub(1_000_000_000);
    if let Fault::TwoNodesDown = fault {
        let streams = [journal, subjects::SUBMIT_STREAM, subjects::RESULTS_STREAM];
        for stream in streams.into_iter().chain(["KV_jetwork-lease"]) {
            nodes.await_stream_leader(&js, stream, Duration::from_secs(60)).await?;
        }
        measure_from = stamp::now_ns();
    }
    let after = stamp::now_ns();
    // A fault the system does not recover from is a figure (the pause runs to the end, the
    // jobs are lost), not the end of the benchmark.
    let within = o.cluster_lease_ttl + Duration::from_secs(60);
    let resumed = jetwork_tests::wait_until("dispatching after the fault", within, || async {
        collector.read(|c| c.stamps.iter().any(|(submitted, _)| *submitted > after))
    })
    .await;
    if let Err(e) = resumed {
        eprintln!("cluster phase, {fault:?}: {e}");
    }
    tokio::time::sleep(STEADY).await;
    let stopped = stamp::now_ns();
    let submitted = producer.stop().await?;
    let hidden = indicatif::ProgressBar::hidden();
    let owed = submitted.acked.len() as u64;
    if let Err(e) = collector.wait_for(owed, Duration::from_secs(60), &hidden).await {
        eprintln!("cluster phase, {fault:?}: {e}");
    }

    let (mut starts, twice) = collector.read(|c| {
        let unique: BTreeSet<&(u64, u64)> = c.stamps.iter().collect();
        let starts: Vec<u64> = c.stamps.iter().map(|(_, started)| *started).collect();
        (starts, c.stamps.len() - unique.len())
    });
    starts.retain(|s| *s >= measure_from && *s <= stopped);
    starts.sort_unstable();
    starts.insert(0, measure_from);
    starts.push(stopped);
    let pause = starts.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0) as f64 / 1e9;
    // A result still being retried (its stream's leader died) may be journaled as finished
    // before it is stored: the audit waits for it a while before calling it missing.
    let consistent =
        jetwork_tests::poll_for("a consistent audit", Duration::from_secs(30), || async {
            Audit::read(&js).await.ok().filter(|a| a.check().is_ok())
        })
        .await;
    let audit = match consistent {
        Ok(audit) => audit,
        Err(_) => {
            let audit = Audit::read(&js).await?;
            audit.check().map_err(|e| anyhow::anyhow!("cluster phase, {fault:?}: {e}"))?;
            audit
        }
    };
    let lost = submitted
        .acked
        .iter()
        .filter(|seq| {
            WorkId::parse(&format!("seq-{seq}")).map_or(true, |id| !audit.results.contains_key(&id))
        })
        .count();
    Ok(Cost { pause, acked: submitted.acked.len(), lost, twice })
}
