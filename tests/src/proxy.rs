//! [`FaultProxy`]: a TCP proxy put between ONE process and nats-server, so that a test can
//! fault that process's link alone: drop, hold or delay the bytes of either direction, cut
//! every connection, refuse new ones, or drop and hold single NATS messages by predicate.
//!
//! ```ignore
//! let proxy = FaultProxy::start(&server.url()).await?;
//! // …start the worker against proxy.url()…
//! let rule = proxy.add_rule(Direction::ToClient, Action::Drop, |f| f.subject.starts_with("jobs."));
//! proxy.blip(Direction::ToServer, Mode::Hold, Duration::from_secs(2)).await;
//! proxy.cut();
//! ```
//!
//! It owns its listener, every proxied connection (one upstream connection per accepted
//! client) and the data in flight. Invariants: per direction, bytes are delivered in the
//! order they were read, each at most once; byte-level faults ([`Mode`]) never reorder;
//! message-level faults (rules) only ever remove or hold whole frames, so both ends keep
//! seeing a valid protocol stream; held data lives and dies with its connection. Backpressure
//! is kept in Pass and Delay: a reader stops once [`QUEUE_LIMIT`] bytes wait to be written,
//! so a slow reader on one side is still slow to the other (nats-server's slow-consumer
//! handling stays real). Hold buffers without limit: holding is the point.
//!
//! Without rules, bytes are forwarded as read; only control lines are looked at, to know
//! where frames end, so a rule installed mid-stream starts at the next frame. Rules need the
//! plain-text protocol: on a TLS connection they see nothing and everything passes.

mod conn;
mod frames;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::task::{AbortHandle, JoinHandle};

use conn::{accept_loop, Pipe};
pub use frames::{Frame, Op};

/// Bytes waiting to be written, per direction of a connection, beyond which the proxy stops
/// reading that direction (in Pass and Delay).
pub const QUEUE_LIMIT: usize = 4 << 20;

/// Which way bytes flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the proxied process to nats-server.
    ToServer,
    /// From nats-server to the proxied process.
    ToClient,
}

/// What happens to the bytes of one direction, on every connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Delivered at once.
    #[default]
    Pass,
    /// Read and discarded; switching to Drop also discards whatever was held or delayed.
    Drop,
    /// Read and kept, in order, until the mode goes back to Pass or Delay.
    Hold,
    /// Each chunk delivered this long after it was read, in order.
    Delay(Duration),
}

/// What a frame rule does with a message that matches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Removes the whole frame.
    Drop,
    /// Keeps the frame aside (per connection) until the rule is removed, then sends it.
    Hold,
}

/// Names an installed frame rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RuleId(u64);

/// The proxy; dropping it aborts its tasks and closes every socket.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

struct Shared {
    /// `host:port` of nats-server.
    upstream: String,
    control: Mutex<Control>,
    conns: Mutex<HashMap<u64, Conn>>,
    refusing: AtomicBool,
    next_conn: AtomicU64,
    accepted: AtomicU64,
    refused: AtomicU64,
    read: [AtomicU64; 2],
}

#[derive(Default)]
struct Control {
    modes: [Mode; 2],
    /// Per direction, in installation order; replaced (never mutated) so readers can keep a
    /// snapshot without holding the lock.
    rules: [Arc<Vec<Arc<Rule>>>; 2],
    matched: HashMap<RuleId, Arc<AtomicU64>>,
    next_rule: u64,
}

struct Rule {
    id: RuleId,
    action: Action,
    predicate: Box<dyn Fn(&Frame) -> bool + Send + Sync>,
    matched: Arc<AtomicU64>,
    removed: AtomicBool,
}

struct Conn {
    task: AbortHandle,
    pipes: [Arc<Pipe>; 2],
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (`nats://host:port`) on a free loopback port.
    pub async fn start(upstream: &str) -> anyhow::Result<Self> {
        let hostport = upstream.split_once("://").map_or(upstream, |(_, rest)| rest);
        anyhow::ensure!(hostport.contains(':'), "upstream {upstream:?} has no port");
        let listener = TcpListener::bind("127.0.0.1:0").await.context("proxy listener")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream: hostport.trim_end_matches('/').to_owned(),
            control: Mutex::default(),
            conns: Mutex::default(),
            refusing: AtomicBool::new(false),
            next_conn: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            read: Default::default(),
        });
        let accept = tokio::spawn(accept_loop(shared.clone(), listener));
        Ok(FaultProxy { addr, shared, accept })
    }

    /// The URL clients connect to instead of the server's.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// Sets the mode of `dir` on all current and future connections.
    pub fn set(&self, dir: Direction, mode: Mode) {
        lock(&self.shared.control).modes[dir as usize] = mode;
        for pipe in self.shared.pipes(dir) {
            if mode == Mode::Drop {
                lock(&pipe.state).clear_queue();
            }
            pipe.to_writer.notify_one();
            pipe.to_reader.notify_one();
        }
    }

    /// Puts `dir` in `mode` for `duration` (a deliberate fault duration), then back to Pass.
    pub async fn blip(&self, dir: Direction, mode: Mode, duration: Duration) {
        self.set(dir, mode);
        tokio::time::sleep(duration).await;
        self.set(dir, Mode::Pass);
    }

    /// Closes every open connection, both sides at once, discarding what they held. New
    /// connections are accepted as before.
    pub fn cut(&self) {
        self.shared.cut();
    }

    /// While true, new connections are accepted and closed at once (open ones are left alone:
    /// [`cut`](Self::cut) them to keep a client out).
    pub fn refuse(&self, refuse: bool) {
        self.shared.refusing.store(refuse, Relaxed);
    }

    /// Installs a frame rule on `dir`. Rules are tried in installation order; the first whose
    /// predicate matches a message frame takes it (and counts it). While `dir` has any rule,
    /// its bytes are parsed as NATS frames; control lines always pass.
    pub fn add_rule(
        &self,
        dir: Direction,
        action: Action,
        predicate: impl Fn(&Frame) -> bool + Send + Sync + 'static,
    ) -> RuleId {
        let mut control = lock(&self.shared.control);
        control.next_rule += 1;
        let id = RuleId(control.next_rule);
        let matched = Arc::new(AtomicU64::new(0));
        control.matched.insert(id, matched.clone());
        let rule = Rule {
            id,
            action,
            predicate: Box::new(predicate),
            matched,
            removed: AtomicBool::new(false),
        };
        let rules = &mut control.rules[dir as usize];
        *rules = Arc::new(rules.iter().cloned().chain([Arc::new(rule)]).collect());
        id
    }

    /// Removes a rule; the frames it held on connections still open are sent, in order
    /// (subject to the direction's mode). Its [`matched`](Self::matched) count stays readable.
    pub fn remove_rule(&self, id: RuleId) {
        let mut control = lock(&self.shared.control);
        for rules in &mut control.rules {
            if let Some(rule) = rules.iter().find(|r| r.id == id) {
                // Set before releasing: a reader that matched it concurrently then passes
                // the frame instead of holding it where nobody would release it.
                rule.removed.store(true, Relaxed);
                *rules = Arc::new(rules.iter().filter(|r| r.id != id).cloned().collect());
            }
        }
        let modes = control.modes;
        drop(control);
        for dir in [Direction::ToServer, Direction::ToClient] {
            let mode = modes[dir as usize];
            for pipe in self.shared.pipes(dir) {
                let mut state = lock(&pipe.state);
                let (released, kept) = std::mem::take(&mut state.held)
                    .into_iter()
                    .partition::<Vec<_>, _>(|(rule, _)| *rule == id);
                state.held = kept;
                for (_, frame) in released {
                    state.push(mode, frame);
                }
                drop(state);
                pipe.to_writer.notify_one();
            }
        }
    }

    /// How many frames rule `id` has matched (also after its removal; 0 if unknown).
    pub fn matched(&self, id: RuleId) -> u64 {
        lock(&self.shared.control).matched.get(&id).map_or(0, |m| m.load(Relaxed))
    }

    /// How many connections were accepted and proxied (refused ones are not counted).
    pub fn connections(&self) -> u64 {
        self.shared.accepted.load(Relaxed)
    }

    /// How many connections were refused.
    pub fn refused(&self) -> u64 {
        self.shared.refused.load(Relaxed)
    }

    /// How many proxied connections are open now.
    pub fn open(&self) -> usize {
        lock(&self.shared.conns).len()
    }

    /// Bytes read from the source of `dir` so far, counted once their fate (mode, rules) has
    /// been applied: a test waits on it to know the proxy has seen what was just sent.
    pub fn read_bytes(&self, dir: Direction) -> u64 {
        self.shared.read[dir as usize].load(Relaxed)
    }

    /// Bytes of `dir` read but not yet written (held, delayed or in the write queue), over
    /// all connections; frames held by rules are not counted.
    pub fn pending(&self, dir: Direction) -> usize {
        self.shared.pipes(dir).iter().map(|p| lock(&p.state).queued).sum()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.shared.cut();
    }
}

impl Shared {
    fn mode(&self, dir: Direction) -> Mode {
        lock(&self.control).modes[dir as usize]
    }

    fn pipes(&self, dir: Direction) -> Vec<Arc<Pipe>> {
        lock(&self.conns).values().map(|c| c.pipes[dir as usize].clone()).collect()
    }

    fn cut(&self) {
        for (_, conn) in lock(&self.conns).drain() {
            conn.task.abort();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread must not turn every later lock into a second panic.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
