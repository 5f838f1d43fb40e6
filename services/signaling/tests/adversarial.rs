//! Hostile clients against a real node, each attack while an honest pair relays in
//! another room: the attacker gets a clear error or the right close code, and the
//! bystanders see no gap, no delay worth the name and no stray frame.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed expectation should stop the test with its message"
)]

mod common;

use std::time::{Duration, Instant};

use common::raw::{self, RawSocket};
use common::{http_get, http_get_with_headers, spawn_node, Client, Event, TestNode};
use serde_json::{json, Value};
use tokio::sync::watch;

const QUICK: Duration = Duration::from_secs(3);

/// Two honest peers relaying numbered app-data one way, every 25 ms, for as long
/// as an attack lasts and at least a second.
struct Bystanders {
    stop: watch::Sender<bool>,
    sender: tokio::task::JoinHandle<(u64, Client)>,
    receiver: tokio::task::JoinHandle<Received>,
}

#[derive(Debug, Default)]
struct Received {
    count: u64,
    /// Numbers that did not follow the one before.
    gaps: Vec<(u64, u64)>,
    strays: Vec<Value>,
    latencies_us: Vec<u64>,
}

impl Bystanders {
    async fn start(url: &str) -> Bystanders {
        let (mut a, _) = Client::joined(url, "bystanders", "Ann").await;
        let (mut b, _) = Client::joined(url, "bystanders", "Bob").await;
        a.recv_type("peer-joined").await;
        let to = b.peer.clone();
        let (stop, stopped) = watch::channel(false);
        let epoch = Instant::now();
        let mut stop_sending = stopped.clone();
        let sender = tokio::spawn(async move {
            let mut sent = 0u64;
            // Within the node's default rate limit of 50 messages a second.
            let mut tick = tokio::time::interval(Duration::from_millis(25));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // At least a second of traffic, however quickly the attack is over.
            while sent < 40 || !*stop_sending.borrow_and_update() {
                tick.tick().await;
                let at = epoch.elapsed().as_micros() as u64;
                a.send(json!({"type": "app-data", "to": to, "data": {"n": sent, "at": at}}))
                    .await;
                sent += 1;
            }
            // Kept open until the receiver is done, so it hears no departure.
            (sent, a)
        });
        let receiver = tokio::spawn(async move {
            let mut got = Received::default();
            let mut expect = 0u64;
            loop {
                let event = b.next_event(Duration::from_millis(500)).await;
                match event {
                    Some(Event::Message(m)) if m["type"] == "app-data" => {
                        let n = m["data"]["n"].as_u64().unwrap_or(u64::MAX);
                        let at = m["data"]["at"].as_u64().unwrap_or(0);
                        got.latencies_us
                            .push((epoch.elapsed().as_micros() as u64).saturating_sub(at));
                        if n != expect {
                            got.gaps.push((expect, n));
                        }
                        expect = n + 1;
                        got.count += 1;
                    }
                    Some(Event::Message(m)) => got.strays.push(m),
                    Some(Event::Closed(frame)) => {
                        got.strays.push(json!({"closed": format!("{frame:?}")}));
                        return got;
                    }
                    None if *stopped.borrow() => return got,
                    None => {}
                }
            }
        });
        Bystanders {
            stop,
            sender,
            receiver,
        }
    }

    /// Stops, then asserts that every message arrived, in order, with nothing else;
    /// prints the latency percentiles for the record.
    async fn finish(self, attack: &str) {
        self.stop.send_replace(true);
        let (sent, _still_open) = self.sender.await.expect("sender runs");
        let mut got = self.receiver.await.expect("receiver runs");
        assert!(got.gaps.is_empty(), "{attack}: gaps {:?}", got.gaps);
        assert!(
            got.strays.is_empty(),
            "{attack}: stray frames {:?}",
            got.strays
        );
        assert_eq!(got.count, sent, "{attack}: lost messages");
        got.latencies_us.sort_unstable();
        let pct = |p: f64| {
            got.latencies_us
                .get(((got.latencies_us.len() as f64 - 1.0) * p) as usize)
                .copied()
                .unwrap_or(0)
        };
        eprintln!(
            "bystanders during {attack}: {} relayed, p50 {} us, p99 {} us",
            got.count,
            pct(0.5),
            pct(0.99)
        );
    }
}

async fn open(node: &TestNode) -> RawSocket {
    let (status, socket) = raw::upgrade(node.port, None).await;
    assert_eq!(status, 101);
    let mut socket = socket.expect("upgraded");
    let welcome = socket.next_json(QUICK).await.expect("welcome");
    assert_eq!(welcome["type"], "welcome");
    socket
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frames_close_with_1009_as_soon_as_their_header_arrives() {
    let node = spawn_node(|_| {}).await;
    let bystanders = Bystanders::start(&node.ws_url()).await;
    let before = rss_bytes();
    for declared in [1u64 << 30, (1u64 << 63) - 1] {
        let mut socket = open(&node).await;
        let started = Instant::now();
        assert!(socket.write(&raw::frame(0x81, b"", Some(declared))).await);
        // Stream a body behind the header for as long as the node takes it,
        // looking for its close frame between writes.
        let chunk = vec![b'x'; 64 * 1024];
        let code = loop {
            if let Some(frame) = socket.next_frame(Duration::from_millis(5)).await {
                if frame.opcode == 8 {
                    break frame.close_code();
                }
                continue;
            }
            if started.elapsed() > QUICK {
                break None;
            }
            socket.write_for(&chunk, Duration::from_millis(50)).await;
        };
        assert_eq!(code, Some(1009), "declared {declared}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "closed only after {:?}",
            started.elapsed()
        );
    }
    let grown = rss_bytes().saturating_sub(before);
    assert!(
        // Loose enough for the other tests of this binary, which allocate beside
        // it; without the guard the node takes in hundreds of MiB.
        grown < 64 * 1024 * 1024,
        "the node buffered {grown} bytes for frames it was going to refuse"
    );
    // A fragmented message may not sum past the limit either.
    let mut socket = open(&node).await;
    let part = vec![b'a'; 40 * 1024];
    assert!(socket.write(&raw::frame(0x01, &part, None)).await);
    socket.write(&raw::frame(0x00, &part, None)).await;
    assert_eq!(socket.close_code(QUICK).await, Some(1009));
    bystanders.finish("oversized frames").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_framing_gets_its_close_code() {
    let node = spawn_node(|_| {}).await;
    let bystanders = Bystanders::start(&node.ws_url()).await;
    let cases: [(&str, Vec<u8>, u16); 6] = [
        (
            "invalid UTF-8",
            raw::frame(0x81, b"{\"type\":\"\xff\xfe\"}", None),
            1007,
        ),
        (
            "invalid UTF-8 across fragments",
            [
                raw::frame(0x01, b"\xe2\x82", None),
                raw::frame(0x80, b"\x28", None),
            ]
            .concat(),
            1007,
        ),
        ("reserved bit", raw::frame(0xC1, b"{}", None), 1002),
        ("reserved opcode", raw::frame(0x83, b"{}", None), 1002),
        ("fragmented ping", raw::frame(0x09, b"", None), 1002),
        ("continuation first", raw::frame(0x80, b"{}", None), 1002),
    ];
    for (what, bytes, code) in cases {
        let mut socket = open(&node).await;
        socket.write(&bytes).await;
        assert_eq!(socket.close_code(QUICK).await, Some(code), "{what}");
    }
    bystanders.finish("broken framing").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_get_errors_and_the_session_goes_on_until_abuse() {
    let node = spawn_node(|_| {}).await;
    let bystanders = Bystanders::start(&node.ws_url()).await;
    let mut socket = open(&node).await;
    for (frame, code) in [
        ("not json", "bad-json"),
        ("[1,2]", "invalid-message"),
        ("{\"type\":\"warp\"}", "unknown-type"),
        (
            "{\"type\":\"offer\",\"to\":\"x\",\"sdp\":\"\"}",
            "not-joined",
        ),
        (
            "{\"type\":\"join\",\"room\":\"../etc\",\"name\":\"x\"}",
            "invalid-room",
        ),
    ] {
        assert!(socket.write(&raw::text(frame)).await);
        let error = socket.next_json(QUICK).await.expect("an error");
        assert_eq!(error["code"], code, "{frame}: {error}");
    }
    assert!(socket.write(&raw::frame(0x82, b"\x00\x01", None)).await);
    let error = socket.next_json(QUICK).await.expect("an error");
    assert_eq!(error["code"], "binary-not-supported");
    // Still a working session.
    socket
        .write(&raw::text(
            r#"{"type":"join","room":"after-errors","name":"Eve"}"#,
        ))
        .await;
    assert_eq!(
        socket.next_json(QUICK).await.expect("joined")["type"],
        "joined"
    );
    // A flood: rate-limited, then closed for abuse.
    let flood = raw::text("{}").repeat(400);
    socket.write(&flood).await;
    assert_eq!(socket.close_code(QUICK).await, Some(1008));
    bystanders.finish("bad messages and a flood").await;
}

#[tokio::test]
async fn names_that_show_nothing_or_disguise_themselves_are_refused() {
    let node = spawn_node(|_| {}).await;
    let mut client = Client::connect(&node.ws_url()).await;
    for name in [
        "\u{200B}\u{200B}",
        "\u{3164}",
        "Ann\u{202E}nimda",
        "\u{2067}Bob\u{2069}",
        "Ann\u{2028}Bob",
    ] {
        client
            .send(json!({"type": "join", "room": "names", "name": name}))
            .await;
        let error = client.expect_error("invalid-name").await;
        assert!(
            error["message"]
                .as_str()
                .is_some_and(|m| m.contains("display name")),
            "{error}"
        );
    }
    // Normalized: what the others see is NFC.
    let joined = client.join("names", "Zoe\u{0308}").await;
    assert_eq!(joined["name"], "Zoë");
}

#[tokio::test]
async fn a_forged_resume_changes_nothing_for_the_owner() {
    let node = spawn_node(|s| {
        s.limits.abuse_strikes = 5;
    })
    .await;
    let url = node.ws_url();
    let (mut victim, _) = Client::joined(&url, "standup", "Victim").await;
    let (mut partner, _) = Client::joined(&url, "standup", "Partner").await;
    victim.recv_type("peer-joined").await;
    let forged = format!("standup.{}.00", victim.peer);
    let mut attacker = Client::connect(&url).await;
    for _ in 0..4 {
        attacker
            .send(json!({"type": "resume", "token": forged}))
            .await;
        attacker.expect_error("resume-failed").await;
    }
    // The owner kept its socket, its seat and its messages.
    partner
        .send(json!({"type": "app-data", "to": victim.peer, "data": "still there?"}))
        .await;
    let relayed = victim.recv_type("app-data").await;
    assert_eq!(relayed["data"], "still there?");
    partner.expect_silence(Duration::from_millis(200)).await;
    // A newcomer sees both members, and nobody left.
    let (_newcomer, joined) = Client::joined(&url, "standup", "Newcomer").await;
    assert_eq!(joined["members"].as_array().map(Vec::len), Some(2));
    // Guessing costs strikes: the fifth failure closes the guesser.
    attacker
        .send(json!({"type": "resume", "token": forged}))
        .await;
    attacker.expect_error("resume-failed").await;
    attacker.expect_close_code(1008).await;
    // A resume for a room that does not exist is refused the same way.
    let mut other = Client::connect(&url).await;
    other
        .send(json!({"type": "resume", "token": "nowhere.0a1b.ff"}))
        .await;
    other.expect_error("resume-failed").await;
    let joined = victim.recv_type("peer-joined").await;
    assert_eq!(joined["peer"]["name"], "Newcomer");
    victim.expect_silence(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn pages_from_other_sites_cannot_open_sockets() {
    let node = spawn_node(|_| {}).await;
    let own = format!("http://127.0.0.1:{}", node.port);
    for origin in [
        None,
        Some(own.as_str()),
        Some("http://localhost:5173"),
        Some("https://127.0.0.1"),
    ] {
        let (status, _) = raw::upgrade(node.port, origin).await;
        assert_eq!(status, 101, "{origin:?}");
    }
    for origin in [
        "null",
        "file://",
        "https://evil.example",
        "http://127.0.0.1.evil.example",
    ] {
        let (status, _) = raw::upgrade(node.port, Some(origin)).await;
        assert_eq!(status, 403, "{origin}");
    }
    let open = spawn_node(|s| s.server.allowed_origins = vec!["*".into()]).await;
    assert_eq!(raw::upgrade(open.port, Some("null")).await.0, 101);
    let (_, metrics) = http_get(node.port, "/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("vc_upgrades_refused_total")
                && l.contains("origin")
                && l.ends_with(" 4")),
        "refusals are counted: {metrics:.0}"
    );
}

#[tokio::test]
async fn static_files_stay_inside_the_web_client() {
    let node = spawn_node(|_| {}).await;
    for path in [
        "/../Cargo.toml",
        "/%2e%2e/Cargo.toml",
        "/js/../../../../etc/passwd",
        "/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/..%5c..%5cCargo.toml",
        "//etc/passwd",
        "/lib/%00signaling-client.js",
    ] {
        let (status, body) = http_get(node.port, path).await;
        assert_eq!(status, 404, "{path}: {body:.80}");
        assert!(
            !body.contains("root:") && !body.contains("[workspace]"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn the_page_is_served_with_security_headers() {
    let node = spawn_node(|_| {}).await;
    for path in ["/", "/r/standup", "/app.js", "/styles.css"] {
        let (_, headers, _) = http_get_with_headers(node.port, path).await;
        for expected in [
            "content-security-policy: default-src 'none'; script-src 'self';",
            "frame-ancestors 'none'",
            "x-content-type-options: nosniff",
            "referrer-policy: no-referrer",
            "x-frame-options: deny",
        ] {
            assert!(
                headers.contains(expected),
                "{path}: {expected} in {headers}"
            );
        }
    }
}

#[tokio::test]
async fn metrics_can_live_on_a_listener_of_their_own() {
    let settings = {
        let mut s = common::test_settings();
        s.server.metrics_address = "127.0.0.1:0".into();
        s
    };
    let app = vc_signaling::startup::Application::build(settings)
        .await
        .expect("builds");
    let (port, metrics_port) = (app.port(), app.metrics_port().expect("a metrics listener"));
    let shutdown = app.shutdown_handle();
    let task = tokio::spawn(app.run_until_stopped());
    assert_eq!(http_get(port, "/metrics").await.0, 404);
    let (status, body) = http_get(metrics_port, "/metrics").await;
    assert_eq!(status, 200);
    assert!(body.contains("vc_sessions"), "{body:.200}");
    assert_eq!(http_get(metrics_port, "/").await.0, 404);
    shutdown.shutdown();
    task.await.expect("joins").expect("stops cleanly");
}

mod grants {
    use super::*;
    use vc_signaling::auth::Claims;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn token(room: &str, exp: u64, nbf: Option<u64>, alg: jsonwebtoken::Algorithm) -> String {
        let claims = Claims {
            sub: "user-1".into(),
            room: room.into(),
            name: None,
            exp,
            nbf,
            iat: None,
            iss: None,
        };
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(alg),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .expect("encodes")
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    async fn jwt_node(window: Duration) -> TestNode {
        spawn_node(|s| {
            s.auth.mode = vc_signaling::config::AuthMode::Jwt;
            s.auth.jwt_secret = SECRET.into();
            s.resume.window = window;
        })
        .await
    }

    /// `alg: none`, an RS256 header on an HS256 signature, and the other ways a
    /// token can be wrong.
    fn forgeries(room: &str) -> Vec<(&'static str, String, &'static str)> {
        use base64::Engine;
        let b64 = |text: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text);
        let claims = format!(r#"{{"sub":"u","room":"{room}","exp":{}}}"#, now() + 60);
        let none = format!("{}.{}.", b64(r#"{"alg":"none","typ":"JWT"}"#), b64(&claims));
        let valid = token(room, now() + 60, None, jsonwebtoken::Algorithm::HS256);
        let (_, rest) = valid.split_once('.').expect("three parts");
        let rs_header = format!("{}.{rest}", b64(r#"{"alg":"RS256","typ":"JWT"}"#));
        let mut tampered = valid.clone();
        tampered.pop();
        tampered.push(if valid.ends_with('A') { 'B' } else { 'A' });
        vec![
            ("alg none", none, "auth-invalid"),
            (
                "RS256 header on an HS256 signature",
                rs_header,
                "auth-invalid",
            ),
            (
                "HS384",
                token(room, now() + 60, None, jsonwebtoken::Algorithm::HS384),
                "auth-invalid",
            ),
            ("tampered signature", tampered, "auth-invalid"),
            (
                "wrong room",
                token(
                    "elsewhere",
                    now() + 60,
                    None,
                    jsonwebtoken::Algorithm::HS256,
                ),
                "auth-wrong-room",
            ),
            (
                "expired",
                token(room, now() - 120, None, jsonwebtoken::Algorithm::HS256),
                "auth-expired",
            ),
            (
                "not yet valid",
                token(
                    room,
                    now() + 600,
                    Some(now() + 300),
                    jsonwebtoken::Algorithm::HS256,
                ),
                "auth-expired",
            ),
        ]
    }

    #[tokio::test]
    async fn forged_and_stale_tokens_are_refused_with_their_code() {
        let node = jwt_node(Duration::from_secs(1)).await;
        let bystanders = {
            let url = node.ws_url();
            let ticket = |name: &str| {
                json!({"type": "join", "room": "bystanders", "name": name,
                    "token": token("bystanders", now() + 60, None, jsonwebtoken::Algorithm::HS256)})
            };
            let (mut a, mut b) = (Client::connect(&url).await, Client::connect(&url).await);
            a.send(ticket("Ann")).await;
            a.recv_type("joined").await;
            b.send(ticket("Bob")).await;
            let joined = b.recv_type("joined").await;
            b.adopt(&joined);
            a.recv_type("peer-joined").await;
            (a, b)
        };
        let mut attacker = Client::connect(&node.ws_url()).await;
        for (what, forged, code) in forgeries("board") {
            attacker
                .send(json!({"type": "join", "room": "board", "name": "Mallory", "token": forged}))
                .await;
            let error = attacker.recv_type("error").await;
            assert_eq!(error["code"], code, "{what}: {error}");
        }
        // The honest pair did not notice.
        let (mut a, mut b) = bystanders;
        a.send(json!({"type": "app-data", "to": b.peer, "data": 1}))
            .await;
        assert_eq!(b.recv_type("app-data").await["data"], 1);
        b.expect_silence(Duration::from_millis(100)).await;
    }

    #[tokio::test]
    async fn a_seat_ends_with_its_grant_and_cannot_be_resumed_after_it() {
        let node = jwt_node(Duration::from_secs(10)).await;
        let url = node.ws_url();
        let long = token("board", now() + 600, None, jsonwebtoken::Algorithm::HS256);
        let short = token("board", now() + 2, None, jsonwebtoken::Algorithm::HS256);
        let mut stays = Client::connect(&url).await;
        stays
            .send(json!({"type": "join", "room": "board", "name": "Stays", "token": long}))
            .await;
        stays.recv_type("joined").await;
        // One seat whose grant runs out while it is held.
        let mut ends = Client::connect(&url).await;
        ends.send(json!({"type": "join", "room": "board", "name": "Ends", "token": short}))
            .await;
        let joined = ends.recv_type("joined").await;
        ends.adopt(&joined);
        stays.recv_type("peer-joined").await;
        ends.expect_error("auth-expired").await;
        ends.expect_close_code(1008).await;
        let left = stays.recv_type("peer-left").await;
        assert_eq!(left["peer"], joined["peer"]);

        // One parked when its grant runs out: its resume is refused and the seat freed.
        let brief = token("board", now() + 2, None, jsonwebtoken::Algorithm::HS256);
        let mut parks = Client::connect(&url).await;
        parks
            .send(json!({"type": "join", "room": "board", "name": "Parks", "token": brief}))
            .await;
        let joined = parks.recv_type("joined").await;
        parks.adopt(&joined);
        stays.recv_type("peer-joined").await;
        let resume_token = parks.resume_token.clone();
        parks.close(4000).await;
        // Wait out the grant itself: the condition here is the clock.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let mut back = Client::connect(&url).await;
        back.send(json!({"type": "resume", "token": resume_token}))
            .await;
        back.expect_error("auth-expired").await;
        let left = stays.recv_type("peer-left").await;
        assert_eq!(left["peer"], joined["peer"]);
    }
}
