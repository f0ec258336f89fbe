//! The NATS text-protocol splitter behind [`FaultProxy`](super::FaultProxy)'s frame rules. It
//! owns frame boundaries for one direction of one connection: cheaply (control lines read,
//! payloads skipped by length, bytes handed on untouched) while no rule is installed, fully
//! (one [`Frame`] per message, a verdict for each) while one is.
//!
//! Invariants: bytes come out in the order they came in, each exactly once unless a verdict
//! drops it; a message frame is passed, dropped or held whole, never cut; the parse buffer
//! always starts at a frame boundary, so a rule installed mid-stream (even mid-payload)
//! starts with the next frame and the one in flight passes untouched. A stream that is not
//! NATS text protocol (TLS, garbage) makes the splitter opaque: from then on every byte
//! passes and no rule sees anything on that connection.

use std::ops::Range;

use bytes::{Bytes, BytesMut};

/// Longest control line before the stream is declared opaque. nats-server's own limit is
/// 4 KiB, but a CONNECT carrying a JWT may be longer; this only guards against garbage.
const MAX_LINE: usize = 1 << 20;
/// Largest message accepted (nats-server's max_payload can be raised to 64 MiB).
const MAX_MESSAGE: usize = 256 << 20;

/// The operation of a message frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Client to server, no headers.
    Pub,
    /// Client to server, with headers.
    Hpub,
    /// Server to client, no headers.
    Msg,
    /// Server to client, with headers.
    Hmsg,
}

/// One message frame, as rule predicates see it.
#[derive(Clone, Debug)]
pub struct Frame {
    /// PUB/HPUB (client to server) or MSG/HMSG (server to client).
    pub op: Op,
    /// The subject.
    pub subject: String,
    /// The subscription id (MSG and HMSG only).
    pub sid: Option<String>,
    /// The reply subject, if any.
    pub reply: Option<String>,
    /// The raw header block (`NATS/1.0…\r\nName: value\r\n…\r\n`), HPUB and HMSG only.
    pub headers: Option<String>,
    /// The payload, without headers.
    pub payload: Bytes,
}

impl Frame {
    /// The first value of header `name` (compared ASCII case-insensitively), trimmed.
    pub fn header(&self, name: &str) -> Option<String> {
        // The first line is the `NATS/1.0 [status]` line, not a header.
        self.headers.as_deref()?.split("\r\n").skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim().eq_ignore_ascii_case(name).then(|| value.trim().to_owned())
        })
    }
}

/// What the rules decided for one frame; `K` names the holding rule.
pub(crate) enum Verdict<K> {
    Pass,
    Drop,
    Hold(K),
}

/// The rules' judge, called once per complete message frame.
pub(crate) type Decide<'a, K> = &'a mut dyn FnMut(&Frame) -> Verdict<K>;

/// What the splitter hands on, in stream order.
pub(crate) enum Out<K> {
    Pass(Bytes),
    Hold(K, Bytes),
}

/// A message frame's control line; ranges are relative to the line's start.
struct Head {
    op: Op,
    subject: Range<usize>,
    sid: Option<Range<usize>>,
    reply: Option<Range<usize>>,
    hdr: usize,
    total: usize,
}

/// A complete message frame in the parse buffer: `[start, body)` is its control line,
/// `[body, end)` its header block, payload and trailing CRLF.
struct Span {
    start: usize,
    body: usize,
    end: usize,
    head: Head,
}

/// The splitter for one direction of one connection.
#[derive(Default)]
pub(crate) struct Splitter {
    /// While tracking: the control line read so far.
    line: Vec<u8>,
    /// While tracking: payload bytes (and the CRLF) still to skip.
    skip: usize,
    /// While parsing: bytes of incomplete frames; starts at a frame boundary.
    buf: BytesMut,
    /// While parsing: the buffer length below which no new frame can be complete.
    need: usize,
    spans: Vec<Span>,
    opaque: bool,
}

impl Splitter {
    /// Whether the stream turned out not to be NATS text protocol.
    pub(crate) fn is_opaque(&self) -> bool {
        self.opaque
    }

    /// Takes the next bytes read. Without `decide` they only update the boundary tracking
    /// and pass on at once; with it, complete message frames get a verdict each.
    pub(crate) fn feed<K>(
        &mut self,
        mut chunk: BytesMut,
        decide: Option<Decide<'_, K>>,
        out: &mut Vec<Out<K>>,
    ) {
        if self.opaque {
            pass(out, chunk.freeze());
            return;
        }
        let Some(decide) = decide else {
            // Rules went away: what the parser buffered starts at a boundary, so tracking
            // it from the boundary state leaves the tracker right.
            if !self.buf.is_empty() {
                self.need = 0;
                let pending = self.buf.split();
                self.track(&pending, false);
                pass(out, pending.freeze());
            }
            self.track(&chunk, false);
            pass(out, chunk.freeze());
            return;
        };
        // Rules came in mid-frame: the rest of that frame passes untouched.
        let inflight = self.track(&chunk, true);
        pass(out, chunk.split_to(inflight).freeze());
        if self.opaque || chunk.is_empty() {
            return;
        }
        if self.buf.is_empty() {
            self.buf = chunk;
        } else {
            self.buf.extend_from_slice(&chunk);
        }
        self.parse(decide, out);
    }

    /// Follows frame boundaries through `data` without keeping it. With `stop`, returns at
    /// the first boundary; returns how many bytes it went through.
    fn track(&mut self, data: &[u8], stop: bool) -> usize {
        let mut i = 0;
        while i < data.len() && !self.opaque {
            if self.skip > 0 {
                let n = self.skip.min(data.len() - i);
                self.skip -= n;
                i += n;
                continue;
            }
            if stop && self.line.is_empty() {
                return i;
            }
            let Some(nl) = data[i..].iter().position(|&b| b == b'\n') else {
                self.line.extend_from_slice(&data[i..]);
                self.opaque |= self.line.len() > MAX_LINE;
                return data.len();
            };
            let parsed = if self.line.is_empty() {
                parse_line(&data[i..i + nl])
            } else {
                self.line.extend_from_slice(&data[i..i + nl]);
                parse_line(&self.line)
            };
            self.line.clear();
            i += nl + 1;
            match parsed {
                Err(()) => self.opaque = true,
                Ok(None) => {}
                Ok(Some(head)) => self.skip = head.total + 2,
            }
        }
        if self.opaque {
            data.len()
        } else {
            i
        }
    }

    /// Hands on every complete frame in the parse buffer, keeping the incomplete tail.
    fn parse<K>(&mut self, decide: Decide<'_, K>, out: &mut Vec<Out<K>>) {
        if self.buf.len() < self.need {
            // Mid-payload of a big message: nothing to look at until it is all here.
            return;
        }
        let (mut pos, mut need, mut bad) = (0, 0, false);
        loop {
            let Some(nl) = self.buf[pos..].iter().position(|&b| b == b'\n') else {
                bad = self.buf.len() - pos > MAX_LINE;
                need = self.buf.len() + 1;
                break;
            };
            match parse_line(&self.buf[pos..pos + nl]) {
                Err(()) => {
                    bad = true;
                    break;
                }
                Ok(None) => pos += nl + 1,
                Ok(Some(head)) => {
                    let body = pos + nl + 1;
                    let end = body + head.total + 2;
                    if end > self.buf.len() {
                        need = end;
                        break;
                    }
                    if &self.buf[end - 2..end] != b"\r\n" {
                        bad = true;
                        break;
                    }
                    self.spans.push(Span { start: pos, body, end, head });
                    pos = end;
                }
            }
        }
        self.need = need.saturating_sub(pos);
        // One freeze for all complete frames: they and the passing runs are slices of it.
        let region = self.buf.split_to(pos).freeze();
        let mut run = 0;
        for span in self.spans.drain(..) {
            let verdict = decide(&span.frame(&region));
            if let Verdict::Pass = verdict {
                continue;
            }
            pass(out, region.slice(run..span.start));
            if let Verdict::Hold(key) = verdict {
                out.push(Out::Hold(key, region.slice(span.start..span.end)));
            }
            run = span.end;
        }
        pass(out, region.slice(run..));
        if bad {
            self.opaque = true;
            pass(out, self.buf.split().freeze());
        }
    }
}

impl Span {
    fn frame(&self, region: &Bytes) -> Frame {
        let text = |r: &Range<usize>| {
            String::from_utf8_lossy(&region[self.start + r.start..self.start + r.end]).into_owned()
        };
        let h = &self.head;
        let headers = (h.hdr > 0)
            .then(|| String::from_utf8_lossy(&region[self.body..self.body + h.hdr]).into_owned());
        Frame {
            op: h.op,
            subject: text(&h.subject),
            sid: h.sid.as_ref().map(text),
            reply: h.reply.as_ref().map(text),
            headers,
            payload: region.slice(self.body + h.hdr..self.body + h.total),
        }
    }
}

fn pass<K>(out: &mut Vec<Out<K>>, bytes: Bytes) {
    if !bytes.is_empty() {
        out.push(Out::Pass(bytes));
    }
}

/// Parses one control line (without its `\n`): `Ok(None)` for a control op, the head of a
/// message op, `Err` for anything that is not NATS.
fn parse_line(line: &[u8]) -> Result<Option<Head>, ()> {
    const CONTROL: [&[u8]; 8] =
        [b"PING", b"PONG", b"+OK", b"-ERR", b"INFO", b"CONNECT", b"SUB", b"UNSUB"];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut args: [Range<usize>; 6] = Default::default();
    let mut n = 0;
    let mut i = 0;
    while i < line.len() {
        if line[i] == b' ' || line[i] == b'\t' {
            i += 1;
            continue;
        }
        let start = i;
        while i < line.len() && line[i] != b' ' && line[i] != b'\t' {
            i += 1;
        }
        if n == 0 && CONTROL.iter().any(|op| line[start..i].eq_ignore_ascii_case(op)) {
            return Ok(None);
        }
        *args.get_mut(n).ok_or(())? = start..i;
        n += 1;
    }
    let op = line.get(args[0].clone()).ok_or(())?;
    let (op, sid, fixed) = match () {
        _ if op.eq_ignore_ascii_case(b"PUB") => (Op::Pub, false, 2),
        _ if op.eq_ignore_ascii_case(b"HPUB") => (Op::Hpub, false, 3),
        _ if op.eq_ignore_ascii_case(b"MSG") => (Op::Msg, true, 3),
        _ if op.eq_ignore_ascii_case(b"HMSG") => (Op::Hmsg, true, 4),
        _ => return Err(()),
    };
    // Arguments after the op: subject, [sid], [reply], [header size], total size.
    let args = &args[1..n];
    let reply = match args.len().checked_sub(fixed) {
        Some(0) => None,
        Some(1) => Some(args[usize::from(sid) + 1].clone()),
        _ => return Err(()),
    };
    let total = number(&line[args[args.len() - 1].clone()])?;
    let hdr = match op {
        Op::Hpub | Op::Hmsg => number(&line[args[args.len() - 2].clone()])?,
        Op::Pub | Op::Msg => 0,
    };
    if hdr > total || total > MAX_MESSAGE {
        return Err(());
    }
    let sid = sid.then(|| args[1].clone());
    Ok(Some(Head { op, subject: args[0].clone(), sid, reply, hdr, total }))
}

fn number(digits: &[u8]) -> Result<usize, ()> {
    if digits.is_empty() || digits.len() > 12 {
        return Err(());
    }
    digits.iter().try_fold(0usize, |n, &d| {
        if d.is_ascii_digit() {
            Ok(n * 10 + usize::from(d - b'0'))
        } else {
            Err(())
        }
    })
}

#[cfg(test)]
#[path = "frames_tests.rs"]
mod tests;
