//! What to say when no master answers: whether one leads at all, according to the lease (free
//! since when, never taken, or held by whom until when: a failover under way), instead of
//! the client library's "no responders". Used by `status`, `status --watch`, the dashboard
//! and every request to the master (`job`, `jobs`, `cancel`, …).

use std::fmt::Write as _;

use jetwork_shared::leader::LeaseView;
use time::OffsetDateTime;

use crate::ClientError;

/// Why a request to the master got no answer, in words (`async_nats`'s "no responders: no
/// responders" is nobody serving the subject).
pub fn request_failure(error: &async_nats::RequestError) -> String {
    match error.kind() {
        async_nats::RequestErrorKind::NoResponders => "nobody serves it".to_owned(),
        async_nats::RequestErrorKind::TimedOut => "no reply in time".to_owned(),
        _ => error.to_string(),
    }
}

/// Says that no master answered `asked` (for `why`), and what the lease says about it, on one
/// line ending in `\n` (`now` for "in …s"): "no master is leading (lease free since …)", or
/// never taken, or held by whom until when (a failover under way, or a leader too busy to
/// answer).
pub fn no_leader(
    asked: &str,
    why: &str,
    lease: Result<LeaseView, ClientError>,
    now: OffsetDateTime,
) -> String {
    // To the second: the lease's own times are no more precise than its renewals.
    let rfc3339 = |t: OffsetDateTime| {
        let t = t.replace_nanosecond(0).unwrap_or(t);
        t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
    };
    let mut out = String::new();
    match lease {
        Ok(view) => match (&view.holder, view.expires(), view.written) {
            (Some(holder), Some(expires), _) => {
                let left = (expires - now).as_seconds_f64();
                let _ = write!(
                    out,
                    "no master answered {asked} ({why}); the lease is held by {} (epoch {}) until \
                     {} ({}) unless renewed: if that master is gone, a standby takes over then",
                    holder.holder,
                    holder.epoch,
                    rfc3339(expires),
                    if left >= 0.0 { format!("in {left:.1}s") } else { "already".to_owned() }
                );
            }
            (Some(holder), None, _) => {
                let _ = write!(
                    out,
                    "no master answered {asked} ({why}); the lease is held by {} (epoch {})",
                    holder.holder, holder.epoch
                );
            }
            (None, _, Some(since)) => {
                let _ = write!(
                    out,
                    "no master is leading (lease free since {}, released or expired); a \
                     standby master takes it as soon as one runs",
                    rfc3339(since)
                );
            }
            // The bucket keeps markers no longer than the lease's time to live.
            (None, _, None) => {
                let _ = write!(out, "no master is leading (lease free");
                if let Some(ttl) = view.ttl {
                    let _ = write!(out, " for more than its {}s time to live", ttl.as_secs());
                }
                out.push_str(", or never taken): start a master");
            }
        },
        Err(e) => {
            let _ =
                write!(out, "no master answered {asked} ({why}); the lease cannot be read ({e})");
        }
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use jetwork_shared::protocol::LeaseHolder;
    use std::time::Duration;

    #[test]
    fn it_names_the_holder_and_the_expiry_or_since_when_the_lease_is_free() {
        let written = OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(100);
        let view = LeaseView {
            holder: Some(LeaseHolder { holder: "m2-x".into(), epoch: 9 }),
            written: Some(written),
            ttl: Some(Duration::from_secs(10)),
        };
        let now = written + time::Duration::seconds(4);
        let text = no_leader("status", "nobody serves it", Ok(view), now);
        assert!(text.contains("held by m2-x (epoch 9)"), "{text}");
        assert!(text.contains("1970-01-01T00:01:50Z (in 6.0s)"), "{text}");
        let free = LeaseView { holder: None, written: Some(written), ttl: None };
        let text = no_leader("status", "x", Ok(free), now);
        assert!(text.contains("no master is leading (lease free since 1970-01-01T00:01:40Z"));
        let long_ago =
            LeaseView { holder: None, written: None, ttl: Some(Duration::from_secs(10)) };
        let text = no_leader("x", "x", Ok(long_ago), now);
        assert!(text.contains("lease free for more than its 10s time to live"), "{text}");
        let unreadable = Err(ClientError::Nats("denied".into()));
        let text = no_leader("jetwork.master.job", "no reply in time", unreadable, now);
        assert!(text.contains("jetwork.master.job (no reply in time)"), "{text}");
        assert!(text.contains("cannot be read (NATS: denied)"), "{text}");
    }
}
