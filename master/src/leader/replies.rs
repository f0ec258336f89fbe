//! Sending a reply once the journal write it depends on is acknowledged (or, for a worker's
//! answer marked `early`, as soon as it is decided: `writes.rs`): encoding it with the
//! leader's epoch, and filling grants with their payloads. A payload not in the cache (after a
//! takeover) is read back from `JETWORK_SUBMIT` in a task, so the loop never waits on it; an
//! item whose payload is gone is failed with a reason (`PayloadMissing`), and one that cannot
//! be read right now is left out of the grant (its attempt times out and is handed out again).
//!
//! A reply that cannot be encoded is answered as an error (500) and logged, never as an empty
//! body a worker would misread.

use jetwork_shared::fast_hash::FastMap;

use async_nats::jetstream;
use async_nats::service::{self, Request};
use bytes::Bytes;
use jetwork_shared::clock::now_ms;
use jetwork_shared::jobs::AdminReply;
use jetwork_shared::protocol::{Assignment, ReportReply, WorkGrant};
use jetwork_shared::{codec, WorkId};
use tokio::sync::mpsc;

use super::cache::PayloadCache;
use super::Internal;
use crate::core::{AssignmentRef, Command, Reply};
use crate::payloads;

/// What sending a reply needs from the leader.
pub struct ReplyContext<'a> {
    pub epoch: u64,
    pub cache: &'a PayloadCache,
    pub js: &'a jetstream::Context,
    pub internal: &'a mpsc::UnboundedSender<Internal>,
}

/// Answers an operator's request with a JSON body.
async fn respond_json<T: serde::Serialize>(request: Request, reply: &T) {
    let body = serde_json::to_vec(reply).map(Bytes::from).map_err(|e| service::error::Error {
        status: format!("cannot encode the reply: {e}"),
        code: 500,
    });
    let _ = request.respond(body).await;
}

/// Sends `reply` to `request`.
pub async fn send(request: Request, reply: Reply, ctx: ReplyContext<'_>) {
    let epoch = ctx.epoch;
    let (assignments, body): (Vec<AssignmentRef>, Body) = match reply {
        Reply::Registered(registered) => return respond(request, codec::encode(&registered)).await,
        Reply::Deregistered(released) => return respond(request, codec::encode(&released)).await,
        Reply::Done { message } => {
            // Operators' replies are JSON, like their requests (`nats req` friendly).
            return respond_json(request, &AdminReply { message }).await;
        }
        Reply::Purged(purged) => return respond_json(request, &purged).await,
        Reply::RetriedAll(retried) => return respond_json(request, &retried).await,
        Reply::Error(e) => {
            let error = service::error::Error { status: e.message, code: usize::from(e.code) };
            let _ = request.respond(Err(error)).await;
            return;
        }
        Reply::Grant { assignments } => (
            assignments,
            Box::new(move |assignments| {
                let size = encoded_size(&assignments, 0);
                codec::encode_sized(&WorkGrant { epoch, assignments }, size)
            }),
        ),
        Reply::Report { verdicts, assignments } => (
            assignments,
            Box::new(move |assignments| {
                let size = encoded_size(&assignments, verdicts.len());
                codec::encode_sized(&ReportReply { epoch, verdicts, assignments }, size)
            }),
        ),
    };
    let mut known: FastMap<WorkId, Bytes> = assignments
        .iter()
        .filter_map(|a| Some((a.work_id.clone(), ctx.cache.get(&a.work_id)?.clone())))
        .collect();
    if known.len() == assignments.len() {
        // The common case: every payload was cached when it was read from the submit stream.
        let full = assignments.iter().filter_map(|a| filled(a, &known)).collect();
        return respond(request, body(full)).await;
    }
    let missing: Vec<AssignmentRef> =
        assignments.iter().filter(|a| !known.contains_key(&a.work_id)).cloned().collect();
    // Reading costs a round trip per item, so the items are read at once, not one after
    // another (a grant of delayed jobs, or the first grants after a takeover, may need a
    // payload read for every item); the loop must keep stepping meanwhile, and the worker's
    // attempt deadline already covers a reply that comes late.
    let (js, internal) = (ctx.js.clone(), ctx.internal.clone());
    tokio::spawn(async move {
        let reads = missing.iter().map(|a| payloads::read(&js, a.seq));
        let results = futures::future::join_all(reads).await;
        let mut fetched = Vec::new();
        for (a, result) in missing.iter().zip(results) {
            match result {
                Ok(Some(payload)) => {
                    fetched.push((a.work_id.clone(), payload.clone()));
                    known.insert(a.work_id.clone(), payload);
                }
                Ok(None) => {
                    tracing::error!(work_id = %a.work_id, seq = a.seq, "payload missing from the submit stream");
                    let missing =
                        Command::PayloadMissing { work_id: a.work_id.clone(), now: now_ms() };
                    let _ = internal.send(Internal::Command(missing));
                }
                Err(e) => {
                    tracing::warn!(work_id = %a.work_id, seq = a.seq, error = %e, "cannot read a payload; the attempt will be retried")
                }
            }
        }
        // Into the cache, so a retry of these items does not read them again.
        let _ = internal.send(Internal::Payloads(fetched));
        let full = assignments.iter().filter_map(|a| filled(a, &known)).collect();
        respond(request, body(full)).await;
    });
}

/// Builds a reply body from the assignments that have their payloads.
type Body = Box<dyn FnOnce(Vec<Assignment>) -> Result<Bytes, codec::CodecError> + Send>;

async fn respond(request: Request, body: Result<Bytes, codec::CodecError>) {
    let reply = body.map_err(|e| {
        tracing::error!(error = %e, "cannot encode a reply");
        service::error::Error { status: format!("cannot encode the reply: {e}"), code: 500 }
    });
    // A requester that has gone away cannot be answered; its attempt times out.
    let _ = request.respond(reply).await;
}

/// About the size of a grant or report reply: its payloads, and room for the fields around
/// them (ids, queue names and a verdict's reason are short; a longer one only grows the
/// buffer once).
fn encoded_size(assignments: &[Assignment], verdicts: usize) -> usize {
    const FIELDS: usize = 256;
    let payloads: usize = assignments.iter().map(|a| a.payload.len()).sum();
    payloads.saturating_add((assignments.len() + verdicts + 1).saturating_mul(FIELDS))
}

/// The assignment with its payload, if the payload is known.
fn filled(a: &AssignmentRef, known: &FastMap<WorkId, Bytes>) -> Option<Assignment> {
    Some(Assignment {
        token: a.token,
        work_id: a.work_id.clone(),
        queue: a.queue.clone(),
        attempt: a.attempt,
        deadline_ms: a.deadline,
        timeout_ms: a.timeout,
        payload: known.get(&a.work_id)?.clone(),
    })
}
