//! Tests of the frame parser: every kind of frame, split anywhere, headers, and streams that
//! are not NATS.

use super::*;

/// A server-to-client stream with every kind of frame, a `big` message among them, as
/// segments tagged with the message index (control lines untagged).
fn stream(big: usize) -> Vec<(Option<usize>, Vec<u8>)> {
    let big: Vec<u8> = (0..big).map(|i| (i % 251) as u8).collect();
    let info = b"INFO {\"server_id\":\"x y\",\"max_payload\":1048576}\r\n+OK\r\nPING\r\n";
    let mut segments = vec![(None, info.to_vec())];
    for i in 0..40 {
        let subject = if i % 3 == 0 { "a" } else { "b.c" };
        let payload: Vec<u8> = if i == 17 { big.clone() } else { format!("m{i}\r\nMSG x").into() };
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
        let decide: Option<Decide<'_, usize>> = if rules_on(k) { Some(&mut decide) } else { None };
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
    let wire = b"CONNECT {\"verbose\":false,\"name\":\"a b\"}\r\nSUB a 1\r\nPUB a 5\r\nhello\r\n\
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
    let passed: Vec<u8> =
        out.iter().flat_map(|o| if let Out::Pass(b) = o { b.to_vec() } else { vec![] }).collect();
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
    assert_eq!(frame.header(jetwork_shared::headers::NATS_MSG_ID).as_deref(), Some("x:y"));
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
    let passed: Vec<u8> =
        out.iter().flat_map(|o| if let Out::Pass(b) = o { b.to_vec() } else { vec![] }).collect();
    assert_eq!(passed, tls);
}
