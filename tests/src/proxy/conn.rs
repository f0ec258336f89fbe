//! The proxied connections: the accept loop that registers each one, and per direction a
//! reader (bytes through the splitter and the rules, into the pipe) and a writer (out of the
//! pipe when the mode allows). They meet the control side in the pipe (queue, held frames,
//! wake-ups) and in `Shared` (modes, rules, counters); no lock is held across an await.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use super::frames::{Decide, Out, Splitter, Verdict};
use super::{lock, Action, Conn, Direction, Frame, Mode, RuleId, Shared, QUEUE_LIMIT};

const READ_SIZE: usize = 64 << 10;

/// One direction of one connection: what was read and waits to be written.
#[derive(Default)]
pub(super) struct Pipe {
    pub(super) state: Mutex<PipeState>,
    pub(super) to_writer: tokio::sync::Notify,
    pub(super) to_reader: tokio::sync::Notify,
}

#[derive(Default)]
pub(super) struct PipeState {
    /// Chunks to write, with the instant they were read (for Delay).
    queue: VecDeque<(Instant, Bytes)>,
    pub(super) queued: usize,
    /// Frames held by rules, in stream order.
    pub(super) held: Vec<(RuleId, Bytes)>,
    /// The reading side has ended.
    eof: bool,
}

impl PipeState {
    /// Queues passing bytes, or drops them in Drop mode.
    pub(super) fn push(&mut self, mode: Mode, bytes: Bytes) {
        if mode != Mode::Drop {
            self.queued += bytes.len();
            self.queue.push_back((Instant::now(), bytes));
        }
    }

    pub(super) fn clear_queue(&mut self) {
        self.queue.clear();
        self.queued = 0;
    }
}

pub(super) async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        let client = match listener.accept().await {
            Ok((client, _)) => client,
            Err(e) => {
                // Out of file descriptors and the like: back off rather than spin.
                tracing::warn!("proxy accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if shared.refusing.load(Relaxed) {
            shared.refused.fetch_add(1, Relaxed);
            continue;
        }
        shared.accepted.fetch_add(1, Relaxed);
        let id = shared.next_conn.fetch_add(1, Relaxed);
        let pipes: [Arc<Pipe>; 2] = Default::default();
        // Registered under the lock it takes to deregister, so a connection that ends at
        // once cannot be registered after it is gone.
        let mut conns = lock(&shared.conns);
        let task = tokio::spawn(serve(shared.clone(), id, client, pipes.clone()));
        conns.insert(id, Conn { task: task.abort_handle(), pipes });
    }
}

async fn serve(shared: Arc<Shared>, id: u64, client: TcpStream, pipes: [Arc<Pipe>; 2]) {
    match TcpStream::connect(shared.upstream.as_str()).await {
        Err(e) => tracing::debug!("proxy connection {id}: upstream: {e}"),
        Ok(server) => {
            let _ = (client.set_nodelay(true), server.set_nodelay(true));
            let (from_client, to_client) = client.into_split();
            let (from_server, to_server) = server.into_split();
            // Either direction ending ends the connection: NATS has no half-close.
            tokio::select! {
                () = pump(&shared, Direction::ToServer, &pipes[0], from_client, to_server) => {}
                () = pump(&shared, Direction::ToClient, &pipes[1], from_server, to_client) => {}
            }
        }
    }
    lock(&shared.conns).remove(&id);
}

/// Moves one direction: ends once its writer has (after the reader's end was written out).
async fn pump(
    shared: &Shared,
    dir: Direction,
    pipe: &Pipe,
    src: OwnedReadHalf,
    dst: OwnedWriteHalf,
) {
    let reader = async {
        if let Err(e) = read_side(shared, dir, pipe, src).await {
            tracing::debug!("proxy {dir:?} read: {e}");
        }
        lock(&pipe.state).eof = true;
        pipe.to_writer.notify_one();
        std::future::pending::<()>().await;
    };
    tokio::select! {
        () = reader => {}
        res = write_side(shared, dir, pipe, dst) => {
            if let Err(e) = res {
                tracing::debug!("proxy {dir:?} write: {e}");
            }
        }
    }
}

async fn read_side(
    shared: &Shared,
    dir: Direction,
    pipe: &Pipe,
    mut src: OwnedReadHalf,
) -> std::io::Result<()> {
    let mut splitter = Splitter::default();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    loop {
        loop {
            let full = lock(&pipe.state).queued >= QUEUE_LIMIT;
            if !full || !matches!(shared.mode(dir), Mode::Pass | Mode::Delay(_)) {
                break;
            }
            pipe.to_reader.notified().await;
        }
        buf.reserve(READ_SIZE);
        let n = src.read_buf(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        let rules = lock(&shared.control).rules[dir as usize].clone();
        if rules.is_empty() {
            splitter.feed(buf.split(), None::<Decide<'_, _>>, &mut out);
        } else {
            let mut decide = |frame: &Frame| {
                let Some(rule) = rules.iter().find(|r| (r.predicate)(frame)) else {
                    return Verdict::Pass;
                };
                rule.matched.fetch_add(1, Relaxed);
                match rule.action {
                    Action::Drop => Verdict::Drop,
                    Action::Hold => Verdict::Hold(rule.clone()),
                }
            };
            let was_opaque = splitter.is_opaque();
            splitter.feed(buf.split(), Some(&mut decide), &mut out);
            if splitter.is_opaque() && !was_opaque {
                tracing::warn!("proxy {dir:?}: not NATS text protocol (TLS?), rules ignored");
            }
        }
        let mode = shared.mode(dir);
        let mut state = lock(&pipe.state);
        for piece in out.drain(..) {
            match piece {
                Out::Pass(bytes) => state.push(mode, bytes),
                Out::Hold(rule, bytes) if rule.removed.load(Relaxed) => state.push(mode, bytes),
                Out::Hold(rule, bytes) => state.held.push((rule.id, bytes)),
            }
        }
        drop(state);
        pipe.to_writer.notify_one();
        shared.read[dir as usize].fetch_add(n as u64, Relaxed);
    }
}

async fn write_side(
    shared: &Shared,
    dir: Direction,
    pipe: &Pipe,
    dst: OwnedWriteHalf,
) -> std::io::Result<()> {
    let mut dst = BufWriter::with_capacity(READ_SIZE, dst);
    let mut batch = Vec::new();
    loop {
        let mode = shared.mode(dir);
        let (wake_at, done) = {
            let mut state = lock(&pipe.state);
            let now = Instant::now();
            let due = match mode {
                Mode::Drop => {
                    state.clear_queue();
                    None
                }
                Mode::Hold => None,
                Mode::Pass => Some(now),
                Mode::Delay(d) => now.checked_sub(d),
            };
            while let Some((read_at, _)) = state.queue.front() {
                if due.is_none_or(|due| *read_at > due) {
                    break;
                }
                if let Some((_, bytes)) = state.queue.pop_front() {
                    state.queued -= bytes.len();
                    batch.push(bytes);
                }
            }
            let wake_at = match mode {
                Mode::Delay(d) => state.queue.front().map(|(read_at, _)| *read_at + d),
                _ => None,
            };
            // The source is gone: write out what is due, abandon what is held.
            (wake_at, state.eof && batch.is_empty() && wake_at.is_none())
        };
        if !batch.is_empty() {
            for bytes in batch.drain(..) {
                dst.write_all(&bytes).await?;
            }
            dst.flush().await?;
            pipe.to_reader.notify_one();
            continue;
        }
        if done {
            return dst.shutdown().await;
        }
        match wake_at {
            Some(at) => {
                tokio::select! {
                    () = pipe.to_writer.notified() => {}
                    () = tokio::time::sleep_until(at) => {}
                }
            }
            None => pipe.to_writer.notified().await,
        }
    }
}
