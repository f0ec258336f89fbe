//! The proxy against a real nats-server: one async-nats client through it, one direct.
//! Absence is never waited for: a test first waits (on [`FaultProxy::read_bytes`]) until the
//! proxy has read what was sent, then proves the loss by a later message arriving first on
//! the same ordered connection.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use async_nats::connection::State;
use async_nats::{Client, ConnectOptions, Event, HeaderMap, Message, Subscriber};
use bytes::Bytes;
use futures::{FutureExt as _, StreamExt as _};
use tokio::time::Instant;

use super::*;
use crate::{wait_until, NatsServer};
use Direction::{ToClient, ToServer};

const DEADLINE: Duration = Duration::from_secs(20);
/// `MSG <subject> <sid> 6\r\n` plus a 6-byte payload and CRLF, with one-letter subjects: the
/// fewest bytes one such message takes on the wire.
const MSG6: u64 = 19;

struct Setup {
    _server: NatsServer,
    proxy: FaultProxy,
    direct: Client,
    proxied: Client,
    connected: Arc<AtomicU64>,
}

async fn setup() -> Setup {
    crate::init_logging();
    let server = NatsServer::start().unwrap();
    let proxy = FaultProxy::start(&server.url()).await.unwrap();
    let direct = server.connect().await.unwrap();
    let connected = Arc::new(AtomicU64::new(0));
    let proxied = via(&proxy, connected.clone()).await;
    wait_until("the proxied client to connect", DEADLINE, || async {
        connected.load(Relaxed) == 1
    })
    .await
    .unwrap();
    Setup { _server: server, proxy, direct, proxied, connected }
}

/// A client through the proxy that retries fast and counts its connections.
async fn via(proxy: &FaultProxy, connected: Arc<AtomicU64>) -> Client {
    ConnectOptions::new()
        .retry_on_initial_connect()
        .ignore_discovered_servers()
        .reconnect_delay_callback(|_| Duration::from_millis(50))
        .event_callback(move |event| {
            let connected = connected.clone();
            async move {
                if matches!(event, Event::Connected) {
                    connected.fetch_add(1, Relaxed);
                }
            }
        })
        .connect(proxy.url())
        .await
        .unwrap()
}

/// Subscribes, and returns once the server has the subscription: the client's own message
/// came back through it.
async fn subscribe(client: &Client, subject: &'static str) -> Subscriber {
    let mut sub = client.subscribe(subject).await.unwrap();
    sync(client, &mut sub, subject, "sync").await;
    sub
}

/// Publishes `marker` to `subject` from `client`; it must be the subscription's next message.
async fn sync(client: &Client, sub: &mut Subscriber, subject: &'static str, marker: &'static str) {
    client.publish(subject, marker.into()).await.unwrap();
    assert_eq!(next(sub).await, marker);
}

async fn next_msg(sub: &mut Subscriber) -> Message {
    tokio::time::timeout(DEADLINE, sub.next()).await.expect("a message in time").expect("open")
}

async fn next(sub: &mut Subscriber) -> String {
    String::from_utf8_lossy(&next_msg(sub).await.payload).into_owned()
}

/// Publishes `n` six-byte messages `<prefix><i>` from the direct client, then waits until
/// the proxy has read them on their way to the proxied client.
async fn publish_seen(s: &Setup, subject: &'static str, prefix: &str, n: u64) {
    let before = s.proxy.read_bytes(ToClient);
    for i in 0..n {
        s.direct.publish(subject, format!("{prefix}{i}").into()).await.unwrap();
    }
    s.direct.flush().await.unwrap();
    wait_until("the proxy to read them", DEADLINE, || async {
        s.proxy.read_bytes(ToClient) >= before + n * MSG6
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn pub_sub_and_request_reply_pass_through() {
    let s = setup().await;
    let mut sub = subscribe(&s.proxied, "p").await;
    sync(&s.direct, &mut sub, "p", "from direct").await;

    // Responders on either side of the proxy.
    for (subject, responder, requester) in
        [("svc1", &s.direct, &s.proxied), ("svc2", &s.proxied, &s.direct)]
    {
        let mut service = subscribe(responder, subject).await;
        let responder = responder.clone();
        let task = tokio::spawn(async move {
            while let Some(request) = service.next().await {
                if let Some(reply) = request.reply {
                    responder.publish(reply, request.payload).await.unwrap();
                }
            }
        });
        let reply = tokio::time::timeout(DEADLINE, requester.request(subject, "hi".into()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(reply.payload, "hi");
        task.abort();
    }
    assert_eq!((s.proxy.connections(), s.proxy.open()), (1, 1));

    drop(s.proxy);
    wait_until("dropping the proxy to disconnect the client", DEADLINE, || async {
        s.proxied.connection_state() != State::Connected
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn drop_loses_messages_and_a_cut_makes_the_client_reconnect() {
    let s = setup().await;
    let mut sub = subscribe(&s.proxied, "d").await;
    s.proxy.set(ToClient, Mode::Drop);
    publish_seen(&s, "d", "lost ", 5).await;
    s.proxy.set(ToClient, Mode::Pass);
    // Same connection, in order: had any been delivered, it would come first.
    sync(&s.direct, &mut sub, "d", "after drop").await;

    s.proxy.set(ToClient, Mode::Drop);
    publish_seen(&s, "d", "lost ", 5).await;
    s.proxy.cut();
    s.proxy.set(ToClient, Mode::Pass);
    wait_until("the client to reconnect", DEADLINE, || async {
        s.connected.load(Relaxed) == 2 && s.proxied.connection_state() == State::Connected
    })
    .await
    .unwrap();
    assert_eq!(s.proxy.connections(), 2);
    // The client resubscribed on its new connection before publishing this.
    sync(&s.proxied, &mut sub, "d", "reconnected").await;
    sync(&s.direct, &mut sub, "d", "flows").await;
}

#[tokio::test]
async fn hold_delivers_late_and_in_order_and_drop_discards_what_is_held() {
    let s = setup().await;
    let mut sub = subscribe(&s.proxied, "h").await;
    s.proxy.set(ToClient, Mode::Hold);
    publish_seen(&s, "h", "held ", 5).await;
    assert!(s.proxy.pending(ToClient) >= 5 * MSG6 as usize);
    assert!(sub.next().now_or_never().is_none(), "nothing delivered while held");
    s.proxy.set(ToClient, Mode::Pass);
    for i in 0..5 {
        assert_eq!(next(&mut sub).await, format!("held {i}"));
    }

    s.proxy.set(ToClient, Mode::Hold);
    publish_seen(&s, "h", "gone ", 3).await;
    s.proxy.set(ToClient, Mode::Drop);
    assert_eq!(s.proxy.pending(ToClient), 0);
    s.proxy.set(ToClient, Mode::Pass);
    sync(&s.direct, &mut sub, "h", "after").await;
    assert_eq!(s.proxy.connections(), 1);
}

#[tokio::test]
async fn delay_delays_in_order_and_blip_holds_for_a_while() {
    let s = setup().await;
    let mut sub = subscribe(&s.proxied, "l").await;
    let delay = Duration::from_millis(400);
    s.proxy.set(ToClient, Mode::Delay(delay));
    let start = Instant::now();
    for i in 0..3 {
        s.direct.publish("l", format!("late {i}").into()).await.unwrap();
    }
    assert_eq!(next(&mut sub).await, "late 0");
    assert!(start.elapsed() >= delay, "delivered after {:?}", start.elapsed());
    assert_eq!((next(&mut sub).await, next(&mut sub).await), ("late 1".into(), "late 2".into()));

    s.proxy.set(ToClient, Mode::Pass);
    let hold = Duration::from_millis(300);
    let start = Instant::now();
    // `join!` polls the blip first, so the link is on hold before the publish.
    let ((), got) = tokio::join!(s.proxy.blip(ToClient, Mode::Hold, hold), async {
        s.direct.publish("l", "blipped".into()).await.unwrap();
        next(&mut sub).await
    });
    assert_eq!(got, "blipped");
    assert!(start.elapsed() >= hold);
}

#[tokio::test]
async fn refuse_keeps_the_client_out_until_cleared() {
    let s = setup().await;
    s.proxy.refuse(true);
    s.proxy.cut();
    wait_until("reconnect attempts to be refused", DEADLINE, || async { s.proxy.refused() >= 3 })
        .await
        .unwrap();
    assert_ne!(s.proxied.connection_state(), State::Connected);
    assert_eq!((s.proxy.connections(), s.connected.load(Relaxed)), (1, 1));

    s.proxy.refuse(false);
    wait_until("the client to get back in", DEADLINE, || async { s.connected.load(Relaxed) == 2 })
        .await
        .unwrap();
    subscribe(&s.proxied, "r").await;
    assert_eq!(s.proxy.connections(), 2);
}

#[tokio::test]
async fn a_drop_rule_loses_one_subject_while_another_flows_on_the_same_connection() {
    let s = setup().await;
    let mut a = subscribe(&s.proxied, "a").await;
    let mut b = subscribe(&s.proxied, "b").await;
    let rule = s.proxy.add_rule(ToClient, Action::Drop, |f| f.subject == "a");
    for i in 0..3 {
        s.direct.publish("a", format!("a{i}").into()).await.unwrap();
        s.direct.publish("b", format!("b{i}").into()).await.unwrap();
    }
    for i in 0..3 {
        assert_eq!(next(&mut b).await, format!("b{i}"));
    }
    // b2 came after a2 on the connection, so all three were judged.
    assert_eq!(s.proxy.matched(rule), 3);
    s.proxy.remove_rule(rule);
    sync(&s.direct, &mut a, "a", "a after").await;
    assert_eq!((s.proxy.connections(), s.proxy.matched(rule)), (1, 3));
}

#[tokio::test]
async fn a_hold_rule_on_a_header_releases_in_order_on_removal() {
    let s = setup().await;
    let mut sub = subscribe(&s.proxied, "m").await;
    let rule = s.proxy.add_rule(ToClient, Action::Hold, |f| {
        f.op == Op::Hmsg && f.header("X-Hold").as_deref() == Some("yes")
    });
    let mut held = HeaderMap::new();
    held.insert("X-Hold", "yes");
    for i in 0..2 {
        s.direct.publish_with_headers("m", held.clone(), format!("h{i}").into()).await.unwrap();
        s.direct.publish("m", format!("p{i}").into()).await.unwrap();
    }
    assert_eq!((next(&mut sub).await, next(&mut sub).await), ("p0".into(), "p1".into()));
    assert_eq!(s.proxy.matched(rule), 2);
    assert!(sub.next().now_or_never().is_none(), "held frames stay held");

    s.proxy.remove_rule(rule);
    for i in 0..2 {
        let msg = next_msg(&mut sub).await;
        assert_eq!(msg.payload, format!("h{i}"));
        assert_eq!(msg.headers.unwrap().get("X-Hold").map(|v| v.as_str()), Some("yes"));
    }
    sync(&s.direct, &mut sub, "m", "after").await;
}

#[tokio::test]
async fn a_to_server_rule_drops_pubs_and_composes_with_delay() {
    let s = setup().await;
    let mut sub = s.direct.subscribe("t.>").await.unwrap();
    sync(&s.direct, &mut sub, "t.sync", "sync").await;
    let rule = s
        .proxy
        .add_rule(ToServer, Action::Drop, |f| f.op == Op::Pub && f.subject.starts_with("t.drop"));
    let delay = Duration::from_millis(200);
    s.proxy.set(ToServer, Mode::Delay(delay));
    let start = Instant::now();
    for i in 0..2 {
        s.proxied.publish("t.drop", format!("d{i}").into()).await.unwrap();
        s.proxied.publish("t.keep", format!("k{i}").into()).await.unwrap();
    }
    assert_eq!(next(&mut sub).await, "k0");
    assert!(start.elapsed() >= delay);
    assert_eq!(next(&mut sub).await, "k1");
    assert_eq!(s.proxy.matched(rule), 2);
    s.proxy.set(ToServer, Mode::Pass);
    // Control lines (PING/PONG) pass the rule: a round trip still works.
    tokio::time::timeout(DEADLINE, s.proxied.flush()).await.unwrap().unwrap();
    s.proxy.remove_rule(rule);
    sync(&s.proxied, &mut sub, "t.drop", "kept now").await;
}

const SIZE: usize = 900 << 10;

/// Publishes `payloads` and checks they arrive intact, in order; then sets `done`.
async fn send_and_check(
    publisher: &Client,
    sub: &mut Subscriber,
    payloads: &[Bytes],
    done: &AtomicBool,
) {
    let publish = async {
        for payload in payloads {
            publisher.publish("big", payload.clone()).await.unwrap();
        }
        publisher.flush().await.unwrap();
    };
    let receive = async {
        for (i, payload) in payloads.iter().enumerate() {
            let msg = next_msg(sub).await;
            assert!(msg.payload == payload, "message {i} intact");
        }
        done.store(true, Relaxed);
    };
    tokio::join!(publish, receive);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_payloads_survive_parsing_while_rules_come_and_go() {
    let s = setup().await;
    let mut sub = subscribe(&s.proxied, "big").await;
    let publisher = via(&s.proxy, Arc::default()).await;
    let payloads: Vec<Bytes> =
        (0..8).map(|i| (0..SIZE).map(|j| (j * 7 + i) as u8).collect()).collect();
    // Rules on throughout: every big frame is parsed whole, both ways.
    let judged = [ToServer, ToClient].map(|dir| {
        let judged = Arc::new(AtomicU64::new(0));
        let counter = judged.clone();
        let rule = s.proxy.add_rule(dir, Action::Drop, move |f| {
            counter.fetch_add(u64::from(f.payload.len() == SIZE), Relaxed);
            false
        });
        (rule, judged)
    });
    send_and_check(&publisher, &mut sub, &payloads[..4], &AtomicBool::new(false)).await;
    for (rule, judged) in judged {
        assert_eq!((judged.load(Relaxed), s.proxy.matched(rule)), (4, 0));
        s.proxy.remove_rule(rule);
    }

    // Rules installed and removed over and over while the data flows (the toggling task has
    // a core to itself), so parsing starts and stops mid-frame, mid-payload.
    let done = AtomicBool::new(false);
    let toggle = async {
        let mut toggles = 0;
        let mut rules = Vec::new();
        while !done.load(Relaxed) {
            if rules.is_empty() {
                for dir in [ToServer, ToClient] {
                    rules.push(s.proxy.add_rule(dir, Action::Hold, |f| f.subject == "never"));
                }
            } else {
                rules.drain(..).for_each(|rule| s.proxy.remove_rule(rule));
            }
            toggles += 1;
            tokio::task::yield_now().await;
        }
        rules.drain(..).for_each(|rule| s.proxy.remove_rule(rule));
        toggles
    };
    let (toggles, _) = tokio::join!(toggle, send_and_check(&publisher, &mut sub, &payloads, &done));
    assert!(toggles > 10, "{toggles} toggles");
    assert_eq!((s.proxy.connections(), s.proxy.open()), (2, 2));
}

#[tokio::test]
async fn many_small_messages_keep_their_order_through_the_parsed_path() {
    const N: usize = 20_000;
    let s = setup().await;
    let mut sub = subscribe(&s.proxied, "n").await;
    for dir in [ToServer, ToClient] {
        s.proxy.add_rule(dir, Action::Drop, |f| f.subject == "never");
    }
    let publish = async {
        for i in 0..N {
            s.proxied.publish("n", format!("{i:0100}").into()).await.unwrap();
        }
    };
    let receive = async {
        for i in 0..N {
            assert_eq!(next(&mut sub).await, format!("{i:0100}"));
        }
    };
    tokio::join!(publish, receive);
}
