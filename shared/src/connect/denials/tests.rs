use super::*;

#[tokio::test]
async fn a_violation_naming_the_request_fails_it_at_once_and_others_do_not() {
    let denials = Denials::default();
    let report = denials.clone();
    let never = std::future::pending::<()>();
    let refused = denials.guard("jetwork.admin.pause", "_INBOX_client", async move {
        report.report("Permissions Violation for Publish to \"jetwork.admin.other\"");
        report.report("some other error");
        report.report("Permissions Violation for Publish to \"jetwork.admin.pause\"");
        never.await
    });
    let err = refused.await.expect_err("refused");
    assert!(err.violation.contains("jetwork.admin.pause"), "{err}");
    assert!(err.to_string().contains("operator user has it"), "{err}");
    let report = denials.clone();
    let inbox = denials.guard("jetwork.master.status", "_INBOX_client", async move {
        report.report("Permissions Violation for Subscription to \"_INBOX_client.abc.*\"");
        std::future::pending::<()>().await
    });
    assert!(inbox.await.expect_err("refused").to_string().contains("inbox_prefix"));
    assert_eq!(Denials::default().guard("x", "_INBOX", async { 7 }).await, Ok(7));
    // `jetwork.master.job` is not `jetwork.master.jobs`.
    let denials = Denials::default();
    let report = denials.clone();
    let job = denials.guard("jetwork.master.job", "_INBOX_client", async move {
        report.report("Permissions Violation for Publish to \"jetwork.master.jobs\"");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        3
    });
    assert_eq!(job.await, Ok(3));
}

#[tokio::test]
async fn a_refused_subscription_dooms_later_requests_too() {
    let denials = Denials::default();
    // The library's reply inbox was refused at the connection's first request …
    denials.report("nats: Permissions Violation for Subscription to \"_INBOX.abc.*\"");
    // … so a request started afterwards cannot get its reply either: it is not even sent
    // (a submission must not be stored when its acknowledgement cannot arrive).
    let sent = std::sync::atomic::AtomicBool::new(false);
    let request = async {
        sent.store(true, std::sync::atomic::Ordering::SeqCst);
        std::future::pending::<()>().await
    };
    let later = denials.guard("jetwork.master.status", "_INBOX", request);
    let err = later.await.expect_err("the inbox was refused before");
    assert!(!sent.load(std::sync::atomic::Ordering::SeqCst), "the request was sent");
    assert!(err.violation.contains("_INBOX.abc.*"), "{err}");
    assert!(err.hint.contains("_INBOX_<user>"), "{err}");
    // A refused publish concerns that publish only.
    let denials = Denials::default();
    denials.report("Permissions Violation for Publish to \"jetwork.admin.pause\"");
    assert_eq!(denials.guard("jetwork.admin.pause", "_INBOX", async { 1 }).await, Ok(1));
}

#[tokio::test]
async fn essentials_name_the_inbox_and_their_subjects_by_kind() {
    let essentials = Essentials::inbox("_INBOX_worker-1")
        .subscribe("jetwork.worker.")
        .publish("jetwork.master.register.");
    let denials = Denials::default();
    let report = denials.clone();
    let reporter = async move {
        // Not essential: another kind, another subject, the prefix of a longer name.
        report.report("Permissions Violation for Publish to \"jetwork.worker.x.ready\"");
        report.report("Permissions Violation for Subscription to \"jetwork.svc.x\"");
        report.report("Permissions Violation for Subscription to \"_INBOX_worker-10.a.*\"");
        report.report(
            "Permissions Violation for Subscription to \"jetwork.worker.w-1.cancel\" using queue \"q\"",
        );
        std::future::pending::<()>().await
    };
    let refused = tokio::select! {
        refused = denials.refused(&essentials) => refused,
        () = reporter => unreachable!(),
    };
    assert!(refused.violation.contains("jetwork.worker.w-1.cancel"), "{refused}");
    assert!(refused.hint.contains("its own login's notices"), "{refused}");
    // Remembered: a watcher started later sees it too.
    let again = denials.refused(&essentials).await;
    assert_eq!(again, refused);
    let denials = Denials::default();
    denials.report("Permissions Violation for Publish to \"jetwork.master.register.w-1\"");
    let watch = denials.refused(&essentials);
    let publish = Denials::default();
    let report = publish.clone();
    let late = async move {
        tokio::task::yield_now().await;
        report.report("Permissions Violation for Publish to \"jetwork.master.register.w-1\"");
        std::future::pending::<Denied>().await
    };
    let refused = tokio::select! { d = publish.refused(&essentials) => d, d = late => d };
    assert!(refused.hint.contains("worker-<n>"), "{refused}");
    // A publish refused before the watch began is not remembered (it concerned that publish).
    let not_yet = tokio::time::timeout(std::time::Duration::from_millis(50), watch).await;
    assert!(not_yet.is_err());
}

#[test]
fn violations_are_read_for_their_kind_and_subject() {
    let v = "nats: Permissions Violation for Subscription to \"_INBOX.x.*\" using queue \"q\"";
    assert_eq!((kind_of(v), subject_of(v)), (Some(Kind::Subscription), Some("_INBOX.x.*")));
    let v = "Permissions Violation for Publish to \"$KV.jetwork-lease.master\"";
    assert_eq!(
        (kind_of(v), subject_of(v)),
        (Some(Kind::Publish), Some("$KV.jetwork-lease.master"))
    );
    assert!(hint(v, "_INBOX").contains("master user"));
    assert!(under("a.b.c", "a.b") && under("a.b", "a.b") && !under("a.bc", "a.b"));
    assert!(under("a.bc", "a.") && !under("a", "a."));
}
