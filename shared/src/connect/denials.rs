//! [`Denials`]: the permission violations the server reports on one connection, so that a
//! request it refused fails at once, naming the permission, instead of waiting out its timeout.
//!
//! NATS does not answer a publish it refuses: it drops the message and sends the connection an
//! asynchronous `-ERR 'Permissions Violation for Publish to "<subject>"'` (or `… Subscription to
//! "<subject>"` for a reply inbox the user may not read). A request therefore waits for a reply
//! that can never come. [`Denials::guard`] runs a request and, in parallel, watches for a
//! violation naming a subject under its own (a subject, or the prefix of the subjects it
//! uses: `$JS.API.DIRECT.GET.JETWORK_RESULTS` covers every direct get on that stream) or the
//! connection's inbox prefix: whichever comes first wins.
//! Violations about other subjects (another request on the same connection) are not this
//! request's, and are ignored by it.

use std::future::Future;

use tokio::sync::broadcast;

/// The permission violations of one connection, as they are reported.
#[derive(Debug, Clone)]
pub struct Denials(broadcast::Sender<String>);

/// The server refused a request's publish, or the subscription its reply needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("NATS refused it: {violation} (this NATS user lacks the permission{hint})")]
pub struct Denied {
    /// The server's words (`Permissions Violation for Publish to "…"`).
    pub violation: String,
    /// Which role of the shipped `nats.conf` has it, as a hint (may be empty).
    pub hint: String,
}

impl Default for Denials {
    fn default() -> Self {
        Denials(broadcast::channel(64).0)
    }
}

impl Denials {
    /// Records a server error reported on the connection, if it is a permission violation.
    pub fn report(&self, error: &str) {
        if error.to_ascii_lowercase().contains("permissions violation") {
            let _ = self.0.send(error.to_owned());
        }
    }

    /// Runs `request` (publishes to subjects starting with `subject`, or a subscription to
    /// one, waiting for replies on an inbox under `inbox_prefix`), unless the server refuses
    /// either first.
    pub async fn guard<T>(
        &self,
        subject: &str,
        inbox_prefix: &str,
        request: impl Future<Output = T>,
    ) -> Result<T, Denied> {
        let mut reported = self.0.subscribe();
        // `x.y` names itself and what lies under it (`"x.y"`, `"x.y.…`), not `x.yz`; a prefix
        // ending in `.` names what lies under it.
        let (exact, under) = match subject.strip_suffix('.') {
            Some(_) => (None, format!("\"{subject}")),
            None => (Some(format!("\"{subject}\"")), format!("\"{subject}.")),
        };
        let inbox = format!("\"{inbox_prefix}.");
        let names_it = |violation: &str| {
            exact.as_deref().is_some_and(|exact| violation.contains(exact))
                || violation.contains(&under)
                || violation.contains(&inbox)
        };
        let denied = async {
            loop {
                match reported.recv().await {
                    Ok(violation) if names_it(&violation) => return violation,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
                }
            }
        };
        tokio::select! {
            done = request => Ok(done),
            violation = denied => Err(Denied { hint: role_hint(subject, &violation), violation }),
        }
    }
}

/// Which role of the shipped `nats.conf` may publish to `subject`, as `; …` (empty if none
/// fits, or the reply inbox was the refused part).
fn role_hint(subject: &str, violation: &str) -> String {
    if violation.to_ascii_lowercase().contains("subscription") {
        return "; set nats.inbox_prefix to the inbox prefix your user may read, e.g. \
                _INBOX_<user>"
            .to_owned();
    }
    let role = if subject.starts_with(crate::subjects::ADMIN_GROUP) {
        "operator"
    } else if [
        crate::subjects::MASTER_REGISTER,
        crate::subjects::MASTER_REQUEST,
        crate::subjects::MASTER_REPORT,
    ]
    .contains(&subject)
    {
        "worker-<n>"
    } else if subject.starts_with("jetwork.") {
        "client or operator"
    } else {
        return String::new();
    };
    format!("; in the shipped nats.conf the {role} user has it")
}

#[cfg(test)]
mod tests {
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
        assert_eq!(denials.guard("x", "_INBOX", async { 7 }).await, Ok(7));
        // `jetwork.master.job` is not `jetwork.master.jobs`.
        let report = denials.clone();
        let job = denials.guard("jetwork.master.job", "_INBOX_client", async move {
            report.report("Permissions Violation for Publish to \"jetwork.master.jobs\"");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            3
        });
        assert_eq!(job.await, Ok(3));
    }
}
