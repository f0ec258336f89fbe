//! [`Denials`]: the permission violations the server reports on a connection (or on all the
//! connections of one process), so that a request it refused fails at once, naming the
//! permission, instead of waiting out its timeout; and so that a process refused what it
//! cannot run without ([`Essentials`]) stops with that error instead of running on deaf.
//!
//! NATS does not answer a publish it refuses: it drops the message and sends the connection an
//! asynchronous `-ERR 'Permissions Violation for Publish to "<subject>"'` (or `… Subscription to
//! "<subject>"` for a subject, or a reply inbox, the user may not read). A request therefore
//! waits for a reply that can never come. [`Denials::guard`] runs a request and, in parallel,
//! watches for a violation naming a subject under its own (a subject, or the prefix of the
//! subjects it uses: `$JS.API.DIRECT.GET.JETWORK_RESULTS` covers every direct get on that
//! stream) or the connection's inbox prefix: whichever comes first wins.
//! Violations about other subjects (another request on the same connection) are not this
//! request's, and are ignored by it.
//!
//! A refused subscription stays refused: the client library subscribes to its reply inbox once
//! per connection, at the first request, so a refusal reported before a request started still
//! dooms it. Refused subscriptions are therefore remembered (the last [`REMEMBERED`]) and
//! checked by every later guard; refused publishes concern only the publish they refused.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::broadcast;

/// Refused subscriptions remembered per [`Denials`].
pub const REMEMBERED: usize = 32;

/// The permission violations of one connection (or process), as they are reported.
#[derive(Debug, Clone)]
pub struct Denials {
    reported: broadcast::Sender<String>,
    /// Refused subscriptions, oldest first: they stay refused.
    refused_subscriptions: Arc<Mutex<VecDeque<String>>>,
}

/// The server refused a request's publish, or the subscription its reply needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("NATS refused it: {violation} (this NATS user lacks the permission{hint})")]
pub struct Denied {
    /// The server's words (`Permissions Violation for Publish to "…"`).
    pub violation: String,
    /// Which role of the shipped `nats.conf` has it, or which setting to change, as a hint
    /// (may be empty).
    pub hint: String,
}

/// Which operation the server refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Publish,
    Subscription,
}

/// What a process cannot do its job without: its reply inbox, and some subjects to publish
/// to or subscribe to. A refusal of any of them is fatal to it (see [`Denials::refused`]).
#[derive(Debug, Clone)]
pub struct Essentials {
    inbox_prefix: String,
    subjects: Vec<(Kind, String)>,
}

impl Essentials {
    /// Replies under `inbox_prefix`, and nothing else yet.
    pub fn inbox(inbox_prefix: &str) -> Self {
        Essentials { inbox_prefix: inbox_prefix.to_owned(), subjects: Vec::new() }
    }

    /// Also publishing to `subject` (or under it, for a prefix ending in `.`).
    pub fn publish(mut self, subject: &str) -> Self {
        self.subjects.push((Kind::Publish, subject.to_owned()));
        self
    }

    /// Also subscribing to `subject` (or under it, for a prefix ending in `.`).
    pub fn subscribe(mut self, subject: &str) -> Self {
        self.subjects.push((Kind::Subscription, subject.to_owned()));
        self
    }

    fn names(&self, violation: &str) -> bool {
        let (Some(kind), Some(refused)) = (kind_of(violation), subject_of(violation)) else {
            return false;
        };
        (kind == Kind::Subscription && under(refused, &self.inbox_prefix))
            || self.subjects.iter().any(|(k, s)| *k == kind && under(refused, s))
    }
}

impl Default for Denials {
    fn default() -> Self {
        Denials {
            reported: broadcast::channel(64).0,
            refused_subscriptions: Arc::new(Mutex::new(VecDeque::new())),
        }
    }
}

impl Denials {
    /// Records a server error reported on the connection, if it is a permission violation.
    pub fn report(&self, error: &str) {
        if !error.to_ascii_lowercase().contains("permissions violation") {
            return;
        }
        if kind_of(error) == Some(Kind::Subscription) {
            let mut refused =
                self.refused_subscriptions.lock().unwrap_or_else(PoisonError::into_inner);
            if !refused.iter().any(|r| r == error) {
                if refused.len() == REMEMBERED {
                    refused.pop_front();
                }
                refused.push_back(error.to_owned());
            }
        }
        let _ = self.reported.send(error.to_owned());
    }

    /// Runs `request` (publishes to subjects starting with `subject`, or a subscription to
    /// one, waiting for replies on an inbox under `inbox_prefix`), unless the server refuses
    /// either first (or refused the subscription before).
    pub async fn guard<T>(
        &self,
        subject: &str,
        inbox_prefix: &str,
        request: impl Future<Output = T>,
    ) -> Result<T, Denied> {
        let names_it = |violation: &str| {
            subject_of(violation).is_some_and(|refused| {
                under(refused, subject)
                    || (kind_of(violation) == Some(Kind::Subscription)
                        && under(refused, inbox_prefix))
            })
        };
        // Listening starts here, before `request` is first polled: its refusal may be
        // reported (on another thread) before the select below polls `denied`.
        let reported = self.reported.subscribe();
        // A request whose reply (or subject) was refused before is not even sent: a
        // submission must not be stored when its acknowledgement cannot arrive.
        if let Some(violation) = self.remembered(names_it) {
            return Err(Denied { hint: hint(&violation, inbox_prefix), violation });
        }
        let denied = self.first(reported, names_it);
        tokio::select! {
            done = request => Ok(done),
            violation = denied => Err(Denied { hint: hint(&violation, inbox_prefix), violation }),
        }
    }

    /// Resolves once the server refuses (or has refused) one of `essentials`: the process
    /// cannot do its job, and should stop with this error. Pending forever otherwise.
    /// Listens from the call on, not from the first poll: a refusal reported in between
    /// counts.
    pub fn refused(&self, essentials: &Essentials) -> impl Future<Output = Denied> + '_ {
        let reported = self.reported.subscribe();
        let essentials = essentials.clone();
        async move {
            let violation = self.first(reported, |v| essentials.names(v)).await;
            Denied { hint: hint(&violation, &essentials.inbox_prefix), violation }
        }
    }

    /// The refusal of one of `essentials` already reported, if any (refused subscriptions
    /// only: they are the ones remembered).
    pub fn refused_now(&self, essentials: &Essentials) -> Option<Denied> {
        let violation = self.remembered(|v| essentials.names(v))?;
        Some(Denied { hint: hint(&violation, &essentials.inbox_prefix), violation })
    }

    /// The first remembered refused subscription `wanted` picks.
    fn remembered(&self, wanted: impl Fn(&str) -> bool) -> Option<String> {
        let refused = self.refused_subscriptions.lock().unwrap_or_else(PoisonError::into_inner);
        refused.iter().find(|v| wanted(v)).cloned()
    }

    /// The first violation `wanted` picks, among the remembered refused subscriptions and
    /// those `reported` (a receiver taken before looking at what is remembered, so that
    /// nothing falls in between).
    async fn first(
        &self,
        mut reported: broadcast::Receiver<String>,
        wanted: impl Fn(&str) -> bool,
    ) -> String {
        if let Some(violation) = self.remembered(&wanted) {
            return violation;
        }
        loop {
            match reported.recv().await {
                Ok(violation) if wanted(&violation) => return violation,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
            }
        }
    }
}

/// Whether `subject` is `name` or lies under it: `x.y` names itself and `x.y.…` (not `x.yz`);
/// a name ending in `.` names what lies under it.
fn under(subject: &str, name: &str) -> bool {
    match name.strip_suffix('.') {
        Some(_) => subject.starts_with(name),
        None => {
            subject.strip_prefix(name).is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
        }
    }
}

/// Which operation a violation refused.
fn kind_of(violation: &str) -> Option<Kind> {
    if violation.contains("for Subscription to") {
        Some(Kind::Subscription)
    } else if violation.contains("for Publish to") {
        Some(Kind::Publish)
    } else {
        None
    }
}

/// The subject a violation names (`… to "<subject>"`).
fn subject_of(violation: &str) -> Option<&str> {
    let (_, rest) = violation.split_once(" to \"")?;
    rest.split_once('"').map(|(subject, _)| subject)
}

/// What to change, or which role of the shipped `nats.conf` has the refused permission, as
/// `; …` (empty if nothing fits).
fn hint(violation: &str, inbox_prefix: &str) -> String {
    let Some(refused) = subject_of(violation) else { return String::new() };
    let is = |name: &str| under(refused, name);
    match kind_of(violation) {
        Some(Kind::Subscription) if is(inbox_prefix) => format!(
            "; it may not read replies under {inbox_prefix}: set nats.inbox_prefix (or \
             --inbox-prefix) to the prefix it may read. The shipped nats.conf gives each user \
             _INBOX_<user>, the default when a user name is given; with an nkey, credentials \
             or a token there is no user name to derive it from"
        ),
        Some(Kind::Subscription) if is("jetwork.worker.") => "; a worker's user reads only \
             its own login's notices (jetwork.worker.<login>.*): run the worker as the NATS user \
             of its login, with an id of that login (<login> or <login>-…, the default)"
            .to_owned(),
        Some(Kind::Subscription) if is("jetwork.master.") || is("jetwork.admin.") => {
            "; in the shipped nats.conf the master user has it".to_owned()
        }
        Some(Kind::Subscription) => String::new(),
        Some(Kind::Publish) if is(crate::subjects::ADMIN_GROUP) => {
            "; in the shipped nats.conf the operator user has it".to_owned()
        }
        Some(Kind::Publish)
            if crate::subjects::WORKER_ENDPOINTS.iter().any(|endpoint| is(endpoint)) =>
        {
            "; a worker's user may publish only under its own login, \
             jetwork.master.<endpoint>.<login>.<id>: in the shipped nats.conf the worker-<n> \
             users have it, each for login worker-<n>"
                .to_owned()
        }
        Some(Kind::Publish)
            if is("jetwork.journal.")
                || is("jetwork.outcomes.")
                || is("jetwork.internal.")
                || is("$KV.jetwork-lease.")
                || refused.starts_with("$JS.API.STREAM.CREATE.")
                || refused.starts_with("$JS.API.STREAM.UPDATE.") =>
        {
            "; in the shipped nats.conf the master user has it".to_owned()
        }
        Some(Kind::Publish) if refused.starts_with("jetwork.") || refused.starts_with("$JS.") => {
            "; in the shipped nats.conf the client and operator users have it".to_owned()
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests;
