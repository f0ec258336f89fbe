//! Reading what the engine asked for to decide an operator's request (`Effect::LookUp`), in a
//! task off the loop, and bringing the answer back as `Command::LookedUp`. Reads only; a read
//! that fails is answered as [`Found::Unavailable`], so the engine refuses the request (503)
//! and forgets it. The engine bounds how many wait at once.

use async_nats::jetstream;
use jetwork_shared::clock::now_ms;
use tokio::sync::mpsc;

use super::Internal;
use crate::core::{Command, Found, LookUp, RequestId};
use crate::{backlog, jobs};

/// Starts reading `lookup` for `request`; the answer arrives on `internal`. `position`: the
/// queue's cursor and the submissions past it taken out of turn, for counting what is unread
/// (only a purge's lookup uses it).
pub fn start(
    js: &jetstream::Context,
    internal: &mpsc::UnboundedSender<Internal>,
    request: RequestId,
    lookup: LookUp,
    position: (u64, u64),
) {
    let (js, internal) = (js.clone(), internal.clone());
    tokio::spawn(async move {
        let found = read(&js, lookup, position).await;
        let _ =
            internal.send(Internal::Command(Command::LookedUp { request, found, now: now_ms() }));
    });
}

async fn read(js: &jetstream::Context, lookup: LookUp, position: (u64, u64)) -> Found {
    let found = match lookup {
        LookUp::Outcome { work_id, queue } => {
            jobs::outcome(js, queue.as_ref(), &work_id).await.map(Found::Outcome)
        }
        LookUp::Outcomes { queue, state, since_ms, limit } => {
            let scanned = jobs::outcomes(js, &queue, state, limit as usize, since_ms).await;
            // As many as asked for were found: more may be left.
            let limit = limit as usize;
            scanned.map(|(outcomes, stopped)| {
                let truncated = stopped || outcomes.len() >= limit;
                Found::Outcomes { outcomes, truncated }
            })
        }
        LookUp::LastSubmitted { queue } => match jobs::last_submitted(js, &queue).await {
            Ok(through_seq) => {
                let (cursor, jumped) = position;
                let positions = vec![(queue.clone(), cursor, jumped)];
                let surveyed = backlog::survey(js, positions, 1, None, 1).await;
                let unread = surveyed.queues.get(&queue).copied().flatten().map_or(0, |u| u.count);
                Ok(Found::LastSubmitted { through_seq, unread })
            }
            Err(e) => Err(e),
        },
    };
    found.unwrap_or_else(|e| Found::Unavailable(e.to_string()))
}
