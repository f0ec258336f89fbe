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
mod tests {
    use super::*;

    /// A server-to-client stream with every kind of frame, a `big` message among them, as
    /// segments tagged with the message index (control lines untagged).
    fn stream(big: usize) -> Vec<(Option<usize>, Vec<u8>)> {
        let big: Vec<u8> = (0..big).map(|i| (i % 251) as u8).collect();
        let info = b"INFO {\"server_id\":\"x y\",\"max_payload\":1048576}\r\n+OK\r\nPING\r\n";
        let mut segments = vec![(None, info.to_vec())];
        for i in 0..40 {
            let subject = if i % 3 == 0 { "a" } else { "b.c" };
            let payload: Vec<u8> =
                if i == 17 { big.clone() } else { format!("m{i}\r\nMSG x").into() };
            let mut frame = Vec::new();
            if i % 4 == 1 {
                let hold = if i % 8 == 1 { "yes" } else { "no" };
                let hdr = format!("NATS/1.0\r\nX-Id: {i}\r\nx-hold:  {hold} \r\n\r\n");
                let total = hdr.len() + payload.len();
                let line = format!("HMSG {subject} 7 _INBOX.r {} {total}\r\n{hdr}", hdr.len());
                frame.extend(line.bytes());
            } else {
                frame.extend(format!("MSG {subject}\t1  {}\r\n", payload.len()).bytes());
            }
            frame.extend(&payload);
            frame.extend(b"\r\n");
            segments.push((Some(i), frame));
            if i % 5 == 0 {
                segments.push((None, b"PONG\r\n-ERR 'Slow Consumer'\r\n".to_vec()));
            }
        }
        segments
    }

    fn verdict(f: &Frame) -> Verdict<usize> {
        let id = f.header("X-ID").map_or(0, |v| v.parse().unwrap());
        if f.subject == "a" {
            Verdict::Drop
        } else if f.header("X-Hold").as_deref() == Some("yes") {
            Verdict::Hold(id)
        } else {
            Verdict::Pass
        }
    }

    /// Feeds the stream in chunks of pseudo-random sizes up to `max`, rules on or off per
    /// chunk as `rules_on` says, and checks what comes out against what the rules saw.
    fn check(max: usize, rules_on: impl Fn(usize) -> bool) -> usize {
        // Byte-sized chunks of a 2 MiB message take long in a debug build; 100 kB do as well.
        let segments = stream(if max < 1000 { 100_000 } else { 2 << 20 });
        let bytes = segments.iter().flat_map(|(_, b)| b.clone()).collect::<Vec<u8>>();
        let mut splitter = Splitter::default();
        let (mut out, mut seen) = (Vec::new(), Vec::new());
        let (mut at, mut seed, mut k) = (0, 0x9e37_79b9_u64, 0);
        while at < bytes.len() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let n = (1 + seed as usize % max).min(bytes.len() - at);
            let mut decide = |f: &Frame| {
                seen.push(f.clone());
                verdict(f)
            };
            let decide: Option<Decide<'_, usize>> =
                if rules_on(k) { Some(&mut decide) } else { None };
            splitter.feed(BytesMut::from(&bytes[at..at + n]), decide, &mut out);
            at += n;
            k += 1;
        }
        // Flush what a last parsing chunk may have left (a complete stream leaves nothing).
        splitter.feed(BytesMut::new(), None::<Decide<'_, usize>>, &mut out);
        assert!(!splitter.is_opaque());

        // Every frame the rules saw is whole and one of the stream's, in order.
        let mut removed = Vec::new();
        let mut last = None;
        for f in &seen {
            let (i, (_, seg)) = segments
                .iter()
                .enumerate()
                .find(|(_, (_, seg))| seg.ends_with(&[&f.payload[..], b"\r\n"].concat()))
                .expect("a frame of the stream");
            assert!(last < Some(i), "frames in order");
            last = Some(i);
            assert!(seg.starts_with(if f.headers.is_some() { b"HMSG" } else { b"MSG " }));
            if !matches!(verdict(f), Verdict::Pass) {
                removed.push(i);
            }
        }
        let expected: Vec<u8> = (0..segments.len())
            .filter(|i| !removed.contains(i))
            .flat_map(|i| segments[i].1.clone())
            .collect();
        let (mut passed, mut held) = (Vec::new(), Vec::new());
        for o in out {
            match o {
                Out::Pass(b) => passed.extend_from_slice(&b),
                Out::Hold(id, b) => {
                    assert!(b.starts_with(b"HMSG b.c 7 _INBOX.r ") && b.ends_with(b"\r\n"));
                    held.push(id);
                }
            }
        }
        assert!(passed == expected, "output is the input minus the removed frames");
        assert!(held.iter().all(|id| id % 8 == 1));
        seen.len()
    }

    #[test]
    fn without_rules_bytes_pass_untouched_whatever_the_chunking() {
        for max in [1, 7, 1000, 70_000, 4 << 20] {
            assert_eq!(check(max, |_| false), 0);
        }
    }

    #[test]
    fn with_rules_every_message_is_judged_whole_whatever_the_chunking() {
        for max in [1, 2, 13, 4096, 300_000, 4 << 20] {
            assert_eq!(check(max, |_| true), 40, "max {max}");
        }
    }

    #[test]
    fn rules_coming_and_going_mid_frame_never_cut_one() {
        let mut seen = 0;
        for (max, period) in [(5, 30), (64, 7), (3000, 2), (200_000, 1), (1 << 20, 1)] {
            seen += check(max, |k| (k / period) % 2 == 1);
        }
        assert!(seen > 40, "{seen} frames parsed");
    }

    #[test]
    fn client_frames_parse() {
        let wire =
            b"CONNECT {\"verbose\":false,\"name\":\"a b\"}\r\nSUB a 1\r\nPUB a 5\r\nhello\r\n\
            HPUB b r 12 14\r\nNATS/1.0\r\n\r\nhi\r\npub\ta  0\r\n\r\nUNSUB 1\r\n";
        let mut frames = Vec::new();
        let mut out = Vec::new();
        let mut decide = |f: &Frame| {
            frames.push(f.clone());
            Verdict::<()>::Pass
        };
        Splitter::default().feed(BytesMut::from(&wire[..]), Some(&mut decide), &mut out);
        let summary: Vec<_> = frames
            .iter()
            .map(|f| (f.op, f.subject.as_str(), f.reply.as_deref(), &f.payload[..]))
            .collect();
        assert_eq!(
            summary,
            [
                (Op::Pub, "a", None, &b"hello"[..]),
                (Op::Hpub, "b", Some("r"), b"hi"),
                (Op::Pub, "a", None, b""),
            ]
        );
        assert_eq!(frames[1].headers.as_deref(), Some("NATS/1.0\r\n\r\n"));
        let passed: Vec<u8> = out
            .iter()
            .flat_map(|o| if let Out::Pass(b) = o { b.to_vec() } else { vec![] })
            .collect();
        assert_eq!(passed, wire);
    }

    #[test]
    fn headers_skip_the_status_line_and_ignore_case() {
        let frame = Frame {
            op: Op::Hmsg,
            subject: "s".into(),
            sid: Some("1".into()),
            reply: None,
            headers: Some("NATS/1.0 503\r\nA: 1\r\nnats-msg-id:  x:y \r\n\r\n".into()),
            payload: Bytes::new(),
        };
        assert_eq!(frame.header("Nats-Msg-Id").as_deref(), Some("x:y"));
        assert_eq!(frame.header("a").as_deref(), Some("1"));
        assert_eq!(frame.header("NATS/1.0 503"), None);
    }

    #[test]
    fn a_stream_that_is_not_nats_passes_untouched_and_opaque() {
        let tls = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\nPUB a 1\r\nx\r\n";
        let mut out = Vec::new();
        let mut decide = |_: &Frame| -> Verdict<()> { panic!("no frame in TLS") };
        let mut splitter = Splitter::default();
        splitter.feed(BytesMut::from(&tls[..5]), Some(&mut decide), &mut out);
        splitter.feed(BytesMut::from(&tls[5..]), Some(&mut decide), &mut out);
        assert!(splitter.is_opaque());
        let passed: Vec<u8> = out
            .iter()
            .flat_map(|o| if let Out::Pass(b) = o { b.to_vec() } else { vec![] })
            .collect();
        assert_eq!(passed, tls);
    }
}
