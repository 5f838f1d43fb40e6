//! The node's behaviour on one node with the in-process bus, through real sockets.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed expectation should stop the test with its message"
)]

mod common;

use std::time::Duration;

use common::{call_states, member_ids, spawn_node, Client};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn two_peers_negotiate_through_the_node() {
    let node = spawn_node(|_| {}).await;
    let url = node.ws_url();
    let (mut ann, joined_ann) = Client::joined(&url, "standup", "Ann").await;
    assert_eq!(ann.welcome["protocol"], 1);
    assert_eq!(ann.welcome["node"], "test-node");
    assert_eq!(joined_ann["id"], 1);
    assert_eq!(joined_ann["name"], "Ann");
    assert!(member_ids(&joined_ann).is_empty());
    assert_eq!(joined_ann["resumeWindowMs"], 300);

    let (mut bob, joined_bob) = Client::joined(&url, "standup", "  Bob ").await;
    assert_eq!(member_ids(&joined_bob), [ann.peer.clone()]);
    assert_eq!(joined_bob["members"][0]["name"], "Ann");
    let seen = ann.recv_type("peer-joined").await;
    assert_eq!(seen["peer"], json!({"id": bob.peer, "name": "Bob"}));

    bob.send(json!({"type": "offer", "to": ann.peer, "sdp": "v=0 offer"}))
        .await;
    let offer = ann.recv_type("offer").await;
    assert_eq!(
        offer,
        json!({"type": "offer", "from": bob.peer, "sdp": "v=0 offer"})
    );

    ann.send(json!({"type": "answer", "to": bob.peer, "sdp": "v=0 answer"}))
        .await;
    let answer = bob.recv_type("answer").await;
    assert_eq!(answer["from"], ann.peer.as_str());
    assert_eq!(answer["sdp"], "v=0 answer");

    let candidate = json!({"candidate": "candidate:1 1 udp 2122260223 127.0.0.1 5000 typ host", "sdpMid": "0", "sdpMLineIndex": 0});
    ann.send(json!({"type": "candidate", "to": bob.peer, "candidate": candidate}))
        .await;
    ann.send(json!({"type": "candidate", "to": bob.peer, "candidate": null}))
        .await;
    assert_eq!(bob.recv_type("candidate").await["candidate"], candidate);
    assert_eq!(bob.recv_type("candidate").await["candidate"], json!(null));

    bob.send(json!({"type": "app-data", "to": ann.peer, "data": {"audio": false, "n": [1, 2]}}))
        .await;
    let data = ann.recv_type("app-data").await;
    assert_eq!(data["from"], bob.peer.as_str());
    assert_eq!(data["data"], json!({"audio": false, "n": [1, 2]}));
}

#[tokio::test]
async fn relays_keep_their_order() {
    let node = spawn_node(|_| {}).await;
    let (mut ann, _) = Client::joined(&node.ws_url(), "burst", "Ann").await;
    let (mut bob, _) = Client::joined(&node.ws_url(), "burst", "Bob").await;
    ann.recv_type("peer-joined").await;
    for i in 0..150 {
        bob.send(json!({"type": "app-data", "to": ann.peer, "data": i}))
            .await;
    }
    for i in 0..150 {
        assert_eq!(ann.recv_type("app-data").await["data"], i);
    }
}

#[tokio::test]
async fn a_full_room_refuses_until_a_seat_frees() {
    let node = spawn_node(|s| s.rooms.capacity = 2).await;
    let url = node.ws_url();
    let (mut ann, _) = Client::joined(&url, "small", "Ann").await;
    let (_bob, _) = Client::joined(&url, "small", "Bob").await;
    ann.recv_type("peer-joined").await;
    let mut cat = Client::connect(&url).await;
    cat.send(json!({"type": "join", "id": "c1", "room": "small", "name": "Cat"}))
        .await;
    let refused = cat.expect_error("room-full").await;
    assert_eq!(refused["id"], "c1");
    ann.send(json!({"type": "leave"})).await;
    ann.recv_type("left").await;
    let joined = cat.join("small", "Cat").await;
    assert_eq!(member_ids(&joined).len(), 1);
}

#[tokio::test]
async fn leave_and_close_are_announced_with_their_reason() {
    let node = spawn_node(|_| {}).await;
    let url = node.ws_url();
    let (mut ann, _) = Client::joined(&url, "room", "Ann").await;
    let (mut bob, _) = Client::joined(&url, "room", "Bob").await;
    ann.recv_type("peer-joined").await;

    bob.send(json!({"type": "leave", "id": 7})).await;
    assert_eq!(bob.recv_type("left").await["id"], 7);
    let left = ann.recv_type("peer-left").await;
    assert_eq!(left["peer"], bob.peer.as_str());
    assert_eq!(left["reason"], "left");

    // The same socket can join again, as a new peer.
    let old_id = bob.peer.clone();
    bob.join("room", "Bob").await;
    assert_ne!(bob.peer, old_id);
    ann.recv_type("peer-joined").await;

    // A closed tab (1001) is gone at once, without waiting for a resume.
    let bob_id = bob.peer.clone();
    bob.close(1001).await;
    let left = ann.recv_type("peer-left").await;
    assert_eq!(left["peer"], bob_id.as_str());
    assert_eq!(left["reason"], "disconnected");
}

#[tokio::test]
async fn a_lost_connection_keeps_the_seat_for_the_resume_window() {
    let node = spawn_node(|s| s.resume.window = Duration::from_millis(400)).await;
    let url = node.ws_url();
    let (mut ann, _) = Client::joined(&url, "room", "Ann").await;
    let (bob, _) = Client::joined(&url, "room", "Bob").await;
    ann.recv_type("peer-joined").await;
    let bob_id = bob.peer.clone();
    bob.drop_connection();
    // Within the window nobody is told.
    ann.expect_silence(Duration::from_millis(200)).await;
    let left = ann.recv_type("peer-left").await;
    assert_eq!(left["peer"], bob_id.as_str());
    assert_eq!(left["reason"], "disconnected");
}

#[tokio::test]
async fn resume_keeps_the_peer_id_without_a_flap() {
    let node = spawn_node(|s| s.resume.window = Duration::from_secs(5)).await;
    let url = node.ws_url();
    let (mut ann, _) = Client::joined(&url, "room", "Ann").await;
    let (bob, _) = Client::joined(&url, "room", "Bob").await;
    ann.recv_type("peer-joined").await;
    let (bob_id, token) = (bob.peer.clone(), bob.resume_token.clone());
    bob.close(4000).await;

    let mut bob = Client::connect(&url).await;
    bob.send(json!({"type": "resume", "id": "r", "token": token, "protocol": 1}))
        .await;
    let resumed = bob.recv_type("resumed").await;
    assert_eq!(resumed["id"], "r");
    assert_eq!(resumed["peer"], bob_id.as_str());
    assert_eq!(resumed["name"], "Bob");
    assert_eq!(member_ids(&resumed), [ann.peer.clone()]);
    // Messages flow both ways again, and Ann never saw Bob leave or join.
    bob.send(json!({"type": "offer", "to": ann.peer, "sdp": "v=0 again"}))
        .await;
    let offer = ann.recv_type("offer").await;
    assert_eq!(offer["from"], bob_id.as_str());
    ann.send(json!({"type": "answer", "to": bob_id, "sdp": "v=0"}))
        .await;
    bob.recv_type("answer").await;
    ann.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn resume_fails_with_a_bad_token_or_after_the_window() {
    let node = spawn_node(|s| s.resume.window = Duration::from_millis(200)).await;
    let url = node.ws_url();
    let (mut ann, _) = Client::joined(&url, "room", "Ann").await;
    let (bob, _) = Client::joined(&url, "room", "Bob").await;
    ann.recv_type("peer-joined").await;
    let token = bob.resume_token.clone();
    bob.drop_connection();

    let mut other = Client::connect(&url).await;
    let forged = format!("{}0", token);
    other
        .send(json!({"type": "resume", "id": 1, "token": forged}))
        .await;
    other.expect_error("resume-failed").await;
    other
        .send(json!({"type": "resume", "token": "not-a-token"}))
        .await;
    other.expect_error("resume-failed").await;

    ann.recv_type("peer-left").await;
    other.send(json!({"type": "resume", "token": token})).await;
    other.expect_error("resume-failed").await;
    // The session goes on: it can still join.
    other.join("room", "Bob again").await;
}

#[tokio::test]
async fn a_silent_client_times_out_and_the_room_is_told() {
    let node = spawn_node(|s| {
        s.heartbeat.interval = Duration::from_millis(100);
        s.heartbeat.timeout = Duration::from_millis(350);
        s.resume.window = Duration::from_millis(100);
    })
    .await;
    let url = node.ws_url();
    let (mut ann, _) = Client::joined(&url, "room", "Ann").await;
    let (bob, _) = Client::joined(&url, "room", "Bob").await;
    ann.recv_type("peer-joined").await;
    // Bob's client stops reading: it answers no ping from now on, like a
    // half-open socket. Ann keeps reading, and so keeps answering.
    let bob_id = bob.peer.clone();
    let left = ann.recv_type("peer-left").await;
    assert_eq!(left["peer"], bob_id.as_str());
    assert_eq!(left["reason"], "timed-out");
    drop(bob);
}

#[tokio::test]
async fn relays_to_peers_outside_the_room_go_nowhere() {
    let node = spawn_node(|_| {}).await;
    let url = node.ws_url();
    let (mut ann, _) = Client::joined(&url, "room-a", "Ann").await;
    let (mut eve, _) = Client::joined(&url, "room-b", "Eve").await;
    ann.send(json!({"type": "offer", "id": 5, "to": eve.peer, "sdp": "v=0"}))
        .await;
    assert_eq!(ann.expect_error("unknown-peer").await["id"], 5);
    ann.send(json!({"type": "candidate", "to": "0000000000000000", "candidate": null}))
        .await;
    ann.expect_error("unknown-peer").await;
    ann.send(json!({"type": "app-data", "to": ann.peer, "data": 1}))
        .await;
    ann.expect_error("unknown-peer").await;
    eve.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn bad_input_gets_its_error_and_the_session_goes_on() {
    let node = spawn_node(|_| {}).await;
    let url = node.ws_url();
    let mut c = Client::connect(&url).await;

    c.send_raw(Message::binary(vec![1u8, 2, 3])).await;
    c.expect_error("binary-not-supported").await;
    c.send_text("{\"type\": \"join\",").await;
    c.expect_error("bad-json").await;
    c.send_text("[1, 2, 3]").await;
    c.expect_error("invalid-message").await;
    c.send(json!({"type": "dance", "id": 3})).await;
    assert_eq!(c.expect_error("unknown-type").await["id"], 3);
    c.send(json!({"type": "join", "id": 4, "name": "Ann"}))
        .await;
    let missing = c.expect_error("invalid-message").await;
    assert_eq!(missing["id"], 4);
    assert!(missing["message"]
        .as_str()
        .unwrap_or_default()
        .contains("room"));
    c.send(json!({"type": "join", "room": 42, "name": "Ann"}))
        .await;
    c.expect_error("invalid-message").await;
    c.send(json!({"type": "join", "room": "no spaces", "name": "Ann"}))
        .await;
    c.expect_error("invalid-room").await;
    c.send(json!({"type": "join", "room": "r".repeat(65), "name": "Ann"}))
        .await;
    c.expect_error("invalid-room").await;
    c.send(json!({"type": "join", "room": "ok", "name": "n".repeat(65)}))
        .await;
    c.expect_error("invalid-name").await;
    c.send(json!({"type": "join", "room": "ok", "name": "   "}))
        .await;
    c.expect_error("invalid-name").await;
    c.send(json!({"type": "join", "room": "ok", "name": "Ann", "protocol": 2}))
        .await;
    c.expect_error("unsupported-protocol").await;
    c.send(json!({"type": "offer", "to": "x", "sdp": "v=0"}))
        .await;
    c.expect_error("not-joined").await;
    c.send(json!({"type": "leave", "id": 9})).await;
    assert_eq!(c.expect_error("not-joined").await["id"], 9);
    c.send(json!({"type": "report", "report": {"rttMs": -5}}))
        .await;
    c.expect_error("invalid-message").await;

    c.join("ok", "Ann").await;
    c.send(json!({"type": "join", "room": "ok2", "name": "Ann"}))
        .await;
    c.expect_error("already-joined").await;
    c.send(json!({"type": "resume", "token": c.resume_token.clone()}))
        .await;
    c.expect_error("already-joined").await;
    // Still a working session.
    c.send(json!({"type": "report", "report": {"final": true, "iceConnectedMs": 300, "outcome": "connected", "candidateType": "host", "rttMs": 1.5}}))
        .await;
    c.send(json!({"type": "leave", "id": 10})).await;
    assert_eq!(c.recv_type("left").await["id"], 10);
}

#[tokio::test]
async fn repeated_abuse_closes_with_policy_violation_and_nobody_else_notices() {
    let node = spawn_node(|s| s.limits.abuse_strikes = 5).await;
    let url = node.ws_url();
    let (mut ann, _) = Client::joined(&url, "room", "Ann").await;
    let (mut bob, _) = Client::joined(&url, "room", "Bob").await;
    ann.recv_type("peer-joined").await;
    let mut troll = Client::connect(&url).await;
    troll.join("room", "Troll").await;
    ann.recv_type("peer-joined").await;
    bob.recv_type("peer-joined").await;
    for _ in 0..5 {
        troll.send_text("garbage").await;
    }
    for _ in 0..5 {
        troll.expect_error("bad-json").await;
    }
    troll.expect_close_code(1008).await;
    // The others see an ordinary departure and keep talking.
    assert_eq!(ann.recv_type("peer-left").await["reason"], "disconnected");
    assert_eq!(bob.recv_type("peer-left").await["reason"], "disconnected");
    bob.send(json!({"type": "offer", "to": ann.peer, "sdp": "v=0"}))
        .await;
    ann.recv_type("offer").await;
}

#[tokio::test]
async fn a_flood_is_rate_limited() {
    let node = spawn_node(|s| {
        s.limits.messages_per_second = 1.0;
        s.limits.message_burst = 5;
        s.limits.abuse_strikes = 100;
    })
    .await;
    let (mut ann, _) = Client::joined(&node.ws_url(), "room", "Ann").await;
    let (mut bob, _) = Client::joined(&node.ws_url(), "room", "Bob").await;
    ann.recv_type("peer-joined").await;
    // The join used one token: four more pass, the rest are dropped.
    for i in 0..10 {
        bob.send(json!({"type": "app-data", "to": ann.peer, "data": i}))
            .await;
    }
    for i in 0..4 {
        assert_eq!(ann.recv_type("app-data").await["data"], i);
    }
    for _ in 4..10 {
        bob.expect_error("rate-limited").await;
    }
    ann.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn ping_is_answered_with_its_id_before_and_after_join() {
    let node = spawn_node(|_| {}).await;
    let url = node.ws_url();
    let mut c = Client::connect(&url).await;
    c.send(json!({"type": "ping", "id": 1})).await;
    assert_eq!(c.recv().await, json!({"type": "pong", "id": 1}));
    c.send(json!({"type": "ping", "id": "n-7f3a"})).await;
    assert_eq!(c.recv().await, json!({"type": "pong", "id": "n-7f3a"}));
    c.send(json!({"type": "ping"})).await;
    assert_eq!(c.recv().await, json!({"type": "pong"}));
    c.send(json!({"type": "ping", "id": -4})).await;
    c.expect_error("invalid-message").await;

    let (mut ann, _) = Client::joined(&url, "room", "Ann").await;
    c.join("room", "Cat").await;
    ann.recv_type("peer-joined").await;
    c.send(json!({"type": "ping", "id": 2})).await;
    assert_eq!(c.recv().await, json!({"type": "pong", "id": 2}));
    // A ping is the sender's business only.
    ann.expect_silence(Duration::from_millis(200)).await;
    // The seat is untouched: relays still flow both ways.
    c.send(json!({"type": "app-data", "to": ann.peer, "data": "after ping"}))
        .await;
    assert_eq!(ann.recv_type("app-data").await["data"], "after ping");
}

#[tokio::test]
async fn pings_take_tokens_like_any_message() {
    let node = spawn_node(|s| {
        s.limits.messages_per_second = 1.0;
        s.limits.message_burst = 3;
        s.limits.abuse_strikes = 100;
    })
    .await;
    let mut c = Client::connect(&node.ws_url()).await;
    for i in 0..5 {
        c.send(json!({"type": "ping", "id": i})).await;
    }
    for i in 0..3 {
        assert_eq!(c.recv().await, json!({"type": "pong", "id": i}));
    }
    for _ in 3..5 {
        let limited = c.expect_error("rate-limited").await;
        assert!(limited.get("id").is_none(), "{limited}");
    }
    // The bucket refills at its rate, and pings are answered again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    c.send(json!({"type": "ping", "id": 9})).await;
    assert_eq!(c.recv().await, json!({"type": "pong", "id": 9}));
}

#[tokio::test]
async fn an_oversized_frame_closes_with_message_too_big() {
    let node = spawn_node(|s| s.limits.max_frame_bytes = 4096).await;
    let (mut ann, _) = Client::joined(&node.ws_url(), "room", "Ann").await;
    let (mut bob, _) = Client::joined(&node.ws_url(), "room", "Bob").await;
    ann.recv_type("peer-joined").await;
    // An SDP-sized frame under the limit passes.
    let sdp = "a".repeat(3000);
    bob.send(json!({"type": "offer", "to": ann.peer, "sdp": sdp}))
        .await;
    ann.recv_type("offer").await;
    let sdp = "a".repeat(5000);
    bob.send(json!({"type": "offer", "to": ann.peer, "sdp": sdp}))
        .await;
    bob.expect_close_code(1009).await;
    assert_eq!(ann.recv_type("peer-left").await["reason"], "disconnected");
}

#[tokio::test]
async fn a_client_that_does_not_read_is_evicted_not_buffered() {
    let node = spawn_node(|s| {
        s.limits.outbound_queue = 8;
        s.limits.messages_per_second = 10_000.0;
        s.limits.message_burst = 10_000;
    })
    .await;
    let (mut ann, _) = Client::joined(&node.ws_url(), "room", "Ann").await;
    let (mut bob, _) = Client::joined(&node.ws_url(), "room", "Bob").await;
    ann.recv_type("peer-joined").await;
    // Ann stops reading. Bob sends far more than socket buffers hold.
    let sdp = "s".repeat(60_000);
    let mut closed = None;
    for _ in 0..2_000 {
        bob.send(json!({"type": "offer", "to": ann.peer, "sdp": sdp}))
            .await;
        if let Some(common::Event::Message(m)) = bob.poll_now().await {
            if m["type"] == "peer-left" {
                closed = Some(m);
                break;
            }
        }
    }
    let closed = match closed {
        Some(m) => m,
        None => bob.recv_type("peer-left").await,
    };
    assert_eq!(closed["peer"], ann.peer.as_str());
    // Ann finally reads: what was queued, then the close with 1013.
    ann.expect_close_code(1013).await;
}

#[tokio::test]
async fn jwt_auth_grants_one_room_to_one_identity() {
    const SECRET: &str = "test-secret-test-secret-test-secret";
    let node = spawn_node(|s| {
        s.auth.mode = vc_signaling::config::AuthMode::Jwt;
        s.auth.jwt_secret = SECRET.into();
    })
    .await;
    let auth = vc_signaling::auth::Authenticator::new(&vc_signaling::config::AuthSettings {
        mode: vc_signaling::config::AuthMode::Jwt,
        jwt_secret: SECRET.into(),
        ..Default::default()
    });
    let token = auth
        .mint("board", "user-42", Some("Dana"), Duration::from_secs(60))
        .expect("mints");
    let url = node.ws_url();
    let mut c = Client::connect(&url).await;

    c.send(json!({"type": "join", "room": "board", "name": "x"}))
        .await;
    c.expect_error("auth-required").await;
    c.send(json!({"type": "join", "room": "board", "name": "x", "token": "abc.def.ghi"}))
        .await;
    c.expect_error("auth-invalid").await;
    c.send(json!({"type": "join", "room": "other", "name": "x", "token": token}))
        .await;
    c.expect_error("auth-wrong-room").await;
    let expired = expired_token(SECRET);
    c.send(json!({"type": "join", "room": "board", "name": "x", "token": expired}))
        .await;
    c.expect_error("auth-expired").await;

    c.send(json!({"type": "join", "room": "board", "name": "x", "token": token}))
        .await;
    let joined = c.recv_type("joined").await;
    assert_eq!(joined["name"], "Dana");
    let (mut d, _) = {
        let other = auth
            .mint("board", "user-7", None, Duration::from_secs(60))
            .expect("mints");
        let mut d = Client::connect(&url).await;
        d.send(json!({"type": "join", "room": "board", "name": "Eli", "token": other}))
            .await;
        let reply = d.recv_type("joined").await;
        (d, reply)
    };
    let seen = c.recv_type("peer-joined").await;
    assert_eq!(seen["peer"]["user"], "user-7");
    assert_eq!(seen["peer"]["name"], "Eli");
    d.expect_silence(Duration::from_millis(50)).await;
}

fn expired_token(secret: &str) -> String {
    let claims = vc_signaling::auth::Claims {
        sub: "u".into(),
        room: "board".into(),
        name: None,
        exp: 1_000,
        nbf: None,
        iat: None,
        iss: None,
    };
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("encodes")
}

#[tokio::test]
async fn ice_servers_carry_turn_credentials_for_the_peer() {
    let node = spawn_node(|s| {
        s.ice.stun_urls = vec!["stun:127.0.0.1:3478".into()];
        s.ice.turn_urls = vec!["turn:127.0.0.1:3478?transport=udp".into()];
        s.ice.turn_secret = "turn-secret".into();
    })
    .await;
    let (client, joined) = Client::joined(&node.ws_url(), "room", "Ann").await;
    let servers = joined["iceServers"].as_array().expect("servers");
    assert_eq!(servers[0]["urls"], json!(["stun:127.0.0.1:3478"]));
    let username = servers[1]["username"].as_str().expect("username");
    let (expiry, peer) = username.split_once(':').expect("expiry:peer");
    assert_eq!(peer, client.peer);
    let expiry: u64 = expiry.parse().expect("unix seconds");
    let now = vc_signaling::clock::unix_ms() / 1000;
    assert!(expiry > now + 3600, "expiry {expiry} vs now {now}");
    assert_eq!(
        servers[1]["credential"],
        vc_signaling::ice::turn_password(b"turn-secret", username)
    );
}

#[tokio::test]
async fn shutdown_closes_sockets_with_going_away() {
    let node = spawn_node(|_| {}).await;
    let (mut ann, _) = Client::joined(&node.ws_url(), "room", "Ann").await;
    let mut idle = Client::connect(&node.ws_url()).await;
    node.shutdown.shutdown();
    ann.expect_close_code(1001).await;
    idle.expect_close_code(1001).await;
    let stopped = tokio::time::timeout(Duration::from_secs(10), node.task)
        .await
        .expect("node exits within the bound");
    stopped.expect("task joins").expect("server stops cleanly");
    assert!(tokio_tungstenite::connect_async(node_url(node.port))
        .await
        .is_err());
}

fn node_url(port: u16) -> String {
    format!("ws://127.0.0.1:{port}/ws")
}

#[tokio::test]
async fn health_readiness_and_the_embedded_web_client() {
    let node = spawn_node(|_| {}).await;
    let (status, body) = common::http_get(node.port, "/healthz").await;
    assert_eq!(status, 200);
    let health: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(health["node"], "test-node");
    assert_eq!(health["status"], "ok");
    let (status, body) = common::http_get(node.port, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(ready["bus"], "connected");

    let (status, page) = common::http_get(node.port, "/").await;
    assert_eq!(status, 200);
    assert!(page.contains("<html"), "{page}");
    let (status, room_page) = common::http_get(node.port, "/r/daily-standup").await;
    assert_eq!(status, 200);
    assert_eq!(room_page, page);
    let (status, _) = common::http_get(node.port, "/lib/signaling-client.js").await;
    assert_eq!(status, 200);
    let (status, _) = common::http_get(node.port, "/no-such-file.js").await;
    assert_eq!(status, 404);
}

/// The value of the series `name` whose labels include every `labels` pair.
fn sample(metrics: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metrics
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            (metric == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
            .then(|| value.parse::<f64>().ok())
            .flatten()
        })
        .next()
        .unwrap_or_else(|| panic!("no series {name}{labels:?} in:\n{metrics}"))
}

#[tokio::test]
async fn metrics_count_known_traffic() {
    let node = spawn_node(|_| {}).await;
    let url = node.ws_url();
    let (mut ann, _) = Client::joined(&url, "metered", "Ann").await;
    let (mut bob, _) = Client::joined(&url, "metered", "Bob").await;
    ann.recv_type("peer-joined").await;
    bob.send(json!({"type": "offer", "to": ann.peer, "sdp": "v=0"}))
        .await;
    ann.recv_type("offer").await;
    ann.send(json!({"type": "answer", "to": bob.peer, "sdp": "v=0"}))
        .await;
    bob.recv_type("answer").await;
    bob.send_text("{oops").await;
    bob.expect_error("bad-json").await;
    let mut eve = Client::connect(&url).await;
    eve.send(json!({"type": "join", "room": "metered", "name": "Eve", "protocol": 9}))
        .await;
    eve.expect_error("unsupported-protocol").await;
    ann.send(json!({"type": "report", "report": {"final": true, "iceConnectedMs": 250, "outcome": "connected", "candidateType": "srflx", "rttMs": 20}}))
        .await;
    ann.send(json!({"type": "leave", "id": 1})).await;
    ann.recv_type("left").await;

    let (_, text) = common::http_get(node.port, "/metrics").await;
    let n = ("node", "test-node");
    assert_eq!(sample(&text, "vc_sessions", &[n]), 3.0);
    assert_eq!(sample(&text, "vc_sessions_opened_total", &[n]), 3.0);
    assert_eq!(sample(&text, "vc_rooms", &[n]), 1.0);
    assert_eq!(
        sample(&text, "vc_joins_total", &[n, ("outcome", "ok")]),
        2.0
    );
    assert_eq!(
        sample(&text, "vc_joins_total", &[n, ("outcome", "invalid")]),
        1.0
    );
    assert_eq!(
        sample(&text, "vc_messages_received_total", &[n, ("type", "offer")]),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            "vc_messages_received_total",
            &[n, ("type", "invalid")]
        ),
        1.0
    );
    assert_eq!(
        sample(&text, "vc_messages_sent_total", &[n, ("type", "answer")]),
        1.0
    );
    assert_eq!(
        sample(&text, "vc_messages_sent_total", &[n, ("type", "welcome")]),
        3.0
    );
    assert_eq!(
        sample(
            &text,
            "vc_messages_rejected_total",
            &[n, ("code", "bad-json")]
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            "vc_relay_latency_seconds_count",
            &[n, ("path", "same_node")]
        ),
        2.0
    );
    assert_eq!(
        sample(
            &text,
            "vc_client_ice_outcomes_total",
            &[n, ("outcome", "connected"), ("candidate_type", "srflx")]
        ),
        1.0
    );
    assert_eq!(
        sample(&text, "vc_client_ice_connected_seconds_sum", &[n]),
        0.25
    );
    assert_eq!(sample(&text, "vc_bus_connected", &[n]), 1.0);
    assert_eq!(sample(&text, "vc_draining", &[n]), 0.0);
    assert!(sample(&text, "vc_bus_published_total", &[n]) >= 4.0);
    assert!(sample(&text, "vc_received_bytes_total", &[n]) > 100.0);
    assert!(sample(&text, "process_resident_memory_bytes", &[n]) > 0.0);
    // The build's allocator, from the same cargo features this test was built with.
    let allocator = if cfg!(feature = "mimalloc") {
        "mimalloc"
    } else if cfg!(feature = "jemalloc") {
        "jemalloc"
    } else {
        "system"
    };
    assert_eq!(
        sample(
            &text,
            "vc_node_info",
            &[
                n,
                ("version", env!("CARGO_PKG_VERSION")),
                ("allocator", allocator)
            ]
        ),
        1.0
    );

    bob.close(1000).await;
    let (_, text) = common::http_get(node.port, "/metrics").await;
    assert_eq!(
        sample(
            &text,
            "vc_sessions_closed_total",
            &[n, ("reason", "client_closed")]
        ),
        1.0
    );
}

/// Three in one room and one in another: what each of them receives.
async fn room_of_three_and_a_neighbour(url: &str) -> (Client, Client, Client, Client) {
    let (mut ann, _) = Client::joined(url, "chat-room", "Ann").await;
    let (mut bob, _) = Client::joined(url, "chat-room", "Bob").await;
    ann.recv_type("peer-joined").await;
    let (cat, _) = Client::joined(url, "chat-room", "Cat").await;
    ann.recv_type("peer-joined").await;
    bob.recv_type("peer-joined").await;
    let (dan, _) = Client::joined(url, "next-door", "Dan").await;
    (ann, bob, cat, dan)
}

#[tokio::test]
async fn chat_reaches_every_other_member_once_stamped_by_the_node() {
    let node = spawn_node(|_| {}).await;
    let (mut ann, mut bob, mut cat, mut dan) = room_of_three_and_a_neighbour(&node.ws_url()).await;
    assert_eq!(ann.welcome["revision"], 4);
    assert_eq!(ann.welcome["maxChatBytes"], 2000);
    // Who sent it comes from the seat: a client's own claims are ignored.
    ann.send(json!({"type": "chat", "id": 5, "text": "  Zoe\u{0308} says <b>hi</b>\nsecond line ", "from": "0000000000000000", "name": "Mallory"}))
        .await;
    let to_bob = bob.recv_type("chat").await;
    let to_cat = cat.recv_type("chat").await;
    assert_eq!(to_bob, to_cat);
    assert_eq!(to_bob["from"], ann.peer.as_str());
    assert_eq!(to_bob["name"], "Ann");
    assert_eq!(to_bob["text"], "Zoë says <b>hi</b>\nsecond line");
    let id = to_bob["messageId"].as_str().expect("message id");
    assert!(
        id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );
    assert!(to_bob["at"]
        .as_u64()
        .is_some_and(|at| at > 1_700_000_000_000));
    // Accepted: no reply to the sender, nothing for another room, and exactly once.
    ann.expect_silence(Duration::from_millis(150)).await;
    dan.expect_silence(Duration::from_millis(10)).await;
    bob.expect_silence(Duration::from_millis(10)).await;
    cat.expect_silence(Duration::from_millis(10)).await;

    // Every sender, in order.
    for i in 0..5 {
        bob.send(json!({"type": "chat", "text": format!("bob {i}")}))
            .await;
    }
    for i in 0..5 {
        let message = ann.recv_type("chat").await;
        assert_eq!(
            (message["from"].as_str(), message["text"].as_str()),
            (Some(bob.peer.as_str()), Some(format!("bob {i}").as_str()))
        );
        assert_eq!(cat.recv_type("chat").await["text"], format!("bob {i}"));
    }
    bob.expect_silence(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn chat_and_reactions_refuse_what_breaks_the_rules_with_their_codes() {
    let node = spawn_node(|s| {
        s.limits.max_chat_bytes = 16;
        s.limits.broadcast_burst = 5;
        s.limits.broadcasts_per_second = 0.01;
    })
    .await;
    let url = node.ws_url();
    let mut loner = Client::connect(&url).await;
    loner
        .send(json!({"type": "chat", "id": "c0", "text": "before joining"}))
        .await;
    assert_eq!(loner.expect_error("not-joined").await["id"], "c0");
    loner.send(json!({"type": "reaction", "emoji": "👍"})).await;
    loner.expect_error("not-joined").await;
    loner
        .send(json!({"type": "call-state", "hand": "yes"}))
        .await;
    loner.expect_error("invalid-message").await;

    let (mut ann, _) = Client::joined(&url, "rules", "Ann").await;
    let (mut bob, _) = Client::joined(&url, "rules", "Bob").await;
    ann.recv_type("peer-joined").await;
    for (id, text, code) in [
        (1, "seventeen bytes!!", "chat-too-long"),
        (2, "  \n \u{200B} ", "chat-empty"),
        (3, "bell\u{0007}", "invalid-chat"),
    ] {
        ann.send(json!({"type": "chat", "id": id, "text": text}))
            .await;
        let error = ann.expect_error(code).await;
        assert_eq!(error["id"], id, "{error}");
    }
    // Bytes after normalization: sixteen of them pass.
    ann.send(json!({"type": "chat", "text": "sixteen bytes!!!"}))
        .await;
    assert_eq!(bob.recv_type("chat").await["text"], "sixteen bytes!!!");
    ann.send(json!({"type": "reaction", "id": 9, "emoji": "💩"}))
        .await;
    assert_eq!(ann.expect_error("invalid-reaction").await["id"], 9);
    bob.expect_silence(Duration::from_millis(100)).await;

    // The broadcast bucket had five tokens; the four refusals above took one
    // each, the message the last. What follows is dropped with its own code, and no strikes:
    // many more than `limits.abuse_strikes` leave the socket open.
    for i in 0..30 {
        ann.send(json!({"type": "reaction", "id": i, "emoji": "👍"}))
            .await;
    }
    for i in 0..30 {
        assert_eq!(ann.expect_error("broadcast-rate-limited").await["id"], i);
    }
    bob.expect_silence(Duration::from_millis(100)).await;
    // Relays are not held back by the broadcast limit.
    ann.send(json!({"type": "offer", "to": bob.peer, "sdp": "v=0"}))
        .await;
    bob.recv_type("offer").await;
}

#[tokio::test]
async fn a_late_joiner_gets_the_chat_so_far_bounded_and_gone_with_the_room() {
    let node = spawn_node(|s| {
        s.chat.history = 3;
        s.limits.broadcast_burst = 20;
    })
    .await;
    let url = node.ws_url();
    let (mut ann, first) = Client::joined(&url, "history", "Ann").await;
    assert!(
        first.get("chat").is_none(),
        "no history in a new room: {first}"
    );
    for i in 0..5 {
        ann.send(json!({"type": "chat", "text": format!("message {i}")}))
            .await;
    }
    ann.send(json!({"type": "reaction", "emoji": "🎉"})).await;
    ann.send(json!({"type": "ping", "id": "p"})).await;
    ann.recv_type("pong").await;

    let (mut bob, joined) = Client::joined(&url, "history", "Bob").await;
    ann.recv_type("peer-joined").await;
    let chat = joined["chat"].as_array().expect("history");
    let texts: Vec<&str> = chat
        .iter()
        .map(|m| m["text"].as_str().expect("text"))
        .collect();
    assert_eq!(
        texts,
        ["message 2", "message 3", "message 4"],
        "the last three, oldest first"
    );
    assert!(chat
        .iter()
        .all(|m| m["from"] == ann.peer.as_str() && m["name"] == "Ann"));
    // Told once: nothing of it comes again as a message, and no reaction was kept.
    bob.expect_silence(Duration::from_millis(150)).await;

    // The last seat out takes the history along.
    ann.send(json!({"type": "leave"})).await;
    ann.recv_type("left").await;
    bob.recv_type("peer-left").await;
    bob.send(json!({"type": "leave"})).await;
    bob.recv_type("left").await;
    let (_cat, joined) = Client::joined(&url, "history", "Cat").await;
    assert!(
        joined.get("chat").is_none(),
        "history of an emptied room: {joined}"
    );
}

#[tokio::test]
async fn chat_history_leaves_out_messages_older_than_the_max_age() {
    let node = spawn_node(|s| s.chat.history_max_age = Duration::from_secs(1)).await;
    let url = node.ws_url();
    let (mut ann, _) = Client::joined(&url, "aging", "Ann").await;
    ann.send(json!({"type": "chat", "text": "old news"})).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    ann.send(json!({"type": "chat", "text": "fresh"})).await;
    ann.send(json!({"type": "ping", "id": 1})).await;
    ann.recv_type("pong").await;
    let (_bob, joined) = Client::joined(&url, "aging", "Bob").await;
    let texts: Vec<&str> = joined["chat"]
        .as_array()
        .expect("history")
        .iter()
        .map(|m| m["text"].as_str().expect("text"))
        .collect();
    assert_eq!(texts, ["fresh"]);
}

#[tokio::test]
async fn a_call_state_is_told_whole_to_the_others_kept_for_joiners_and_kept_across_a_resume() {
    let node = spawn_node(|s| s.resume.window = Duration::from_secs(5)).await;
    let url = node.ws_url();
    let (mut ann, _) = Client::joined(&url, "hands", "Ann").await;
    let (mut bob, _) = Client::joined(&url, "hands", "Bob").await;
    ann.recv_type("peer-joined").await;
    ann.send(json!({"type": "call-state", "hand": true})).await;
    assert_eq!(
        bob.recv_type("peer-state").await,
        json!({"type": "peer-state", "peer": ann.peer, "hand": true,
               "muted": false, "cameraOff": false, "sharing": false})
    );
    // A change names only what changes; the others hear the whole state.
    ann.send(json!({"type": "call-state", "muted": true, "cameraOff": true}))
        .await;
    assert_eq!(
        bob.recv_type("peer-state").await,
        json!({"type": "peer-state", "peer": ann.peer, "hand": true,
               "muted": true, "cameraOff": true, "sharing": false})
    );
    bob.send(json!({"type": "call-state", "sharing": true}))
        .await;
    assert_eq!(
        ann.recv_type("peer-state").await,
        json!({"type": "peer-state", "peer": bob.peer, "hand": false,
               "muted": false, "cameraOff": false, "sharing": true})
    );

    let (mut cat, joined) = Client::joined(&url, "hands", "Cat").await;
    assert_eq!(
        call_states(&joined),
        [
            (
                "Ann".to_owned(),
                json!({"hand": true, "muted": true, "cameraOff": true})
            ),
            ("Bob".to_owned(), json!({"sharing": true})),
        ]
    );
    ann.recv_type("peer-joined").await;
    bob.recv_type("peer-joined").await;

    // Ann's socket drops; meanwhile Bob stops sharing, which she is not there to
    // hear. Her resume tells her, and her own state is still hers for everyone.
    let token = ann.resume_token.clone();
    let ann_id = ann.peer.clone();
    ann.close(4000).await;
    bob.send(json!({"type": "call-state", "sharing": false, "muted": true}))
        .await;
    assert_eq!(cat.recv_type("peer-state").await["muted"], true);
    let mut ann = Client::connect(&url).await;
    ann.send(json!({"type": "resume", "token": token})).await;
    let resumed = ann.recv_type("resumed").await;
    assert_eq!(
        call_states(&resumed),
        [
            ("Bob".to_owned(), json!({"muted": true})),
            ("Cat".to_owned(), json!({})),
        ]
    );
    let (_dan, joined) = Client::joined(&url, "hands", "Dan").await;
    assert_eq!(joined["members"][0]["id"], ann_id.as_str());
    assert_eq!(
        call_states(&joined)[0],
        (
            "Ann".to_owned(),
            json!({"hand": true, "muted": true, "cameraOff": true})
        )
    );

    ann.send(json!({"type": "call-state", "hand": false})).await;
    for other in [&mut bob, &mut cat] {
        other.recv_type("peer-joined").await;
        let lowered = other.recv_type("peer-state").await;
        assert_eq!(
            lowered,
            json!({"type": "peer-state", "peer": ann_id, "hand": false,
                   "muted": true, "cameraOff": true, "sharing": false})
        );
    }
}

#[tokio::test]
async fn a_call_state_that_names_no_field_is_an_invalid_message_and_changes_nothing() {
    let node = spawn_node(|_| {}).await;
    let url = node.ws_url();
    let (mut ann, _) = Client::joined(&url, "empty-state", "Ann").await;
    let (mut bob, _) = Client::joined(&url, "empty-state", "Bob").await;
    ann.recv_type("peer-joined").await;
    for (id, frame) in [
        ("s1", json!({"type": "call-state", "id": "s1"})),
        (
            "s2",
            json!({"type": "call-state", "id": "s2", "raised": true}),
        ),
        (
            "s3",
            json!({"type": "call-state", "id": "s3", "muted": "yes"}),
        ),
    ] {
        ann.send(frame).await;
        assert_eq!(ann.expect_error("invalid-message").await["id"], id);
    }
    // The session goes on, and the next change is the first the others hear.
    ann.send(json!({"type": "call-state", "muted": true})).await;
    assert_eq!(
        bob.recv_type("peer-state").await,
        json!({"type": "peer-state", "peer": ann.peer, "hand": false,
               "muted": true, "cameraOff": false, "sharing": false})
    );
}

#[tokio::test]
async fn reactions_reach_the_others_and_are_not_kept() {
    let node = spawn_node(|_| {}).await;
    let (mut ann, mut bob, mut cat, mut dan) = room_of_three_and_a_neighbour(&node.ws_url()).await;
    cat.send(json!({"type": "reaction", "emoji": "❤️"})).await;
    for other in [&mut ann, &mut bob] {
        assert_eq!(
            other.recv_type("reaction").await,
            json!({"type": "reaction", "from": cat.peer, "emoji": "❤️"})
        );
    }
    cat.expect_silence(Duration::from_millis(100)).await;
    dan.expect_silence(Duration::from_millis(10)).await;
    let (_eve, joined) = Client::joined(&node.ws_url(), "chat-room", "Eve").await;
    assert!(joined.get("chat").is_none(), "{joined}");
}

#[tokio::test]
async fn the_lobby_head_count_counts_seats_and_refuses_bad_rooms() {
    let node = spawn_node(|_| {}).await;
    let count = |body: &str| {
        serde_json::from_str::<serde_json::Value>(body).expect("JSON")["members"].clone()
    };
    let (status, body) = common::http_get(node.port, "/api/rooms/lobby-count").await;
    assert_eq!((status, count(&body)), (200, json!(0)), "{body}");
    let (_ann, _) = Client::joined(&node.ws_url(), "lobby-count", "Ann").await;
    let (_bob, _) = Client::joined(&node.ws_url(), "lobby-count", "Bob").await;
    let (status, headers, body) =
        common::http_get_with_headers(node.port, "/api/rooms/lobby-count").await;
    assert_eq!((status, count(&body)), (200, json!(2)), "{body}");
    assert!(headers.contains("cache-control: no-store"), "{headers}");
    let (status, body) = common::http_get(node.port, "/api/rooms/not%20a%20room").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("invalid-room"), "{body}");
}

#[tokio::test]
async fn with_jwt_the_head_count_needs_a_token_for_that_room() {
    const SECRET: &str = "test-secret-test-secret-test-secret";
    let node = spawn_node(|s| {
        s.auth.mode = vc_signaling::config::AuthMode::Jwt;
        s.auth.jwt_secret = SECRET.into();
    })
    .await;
    let auth = vc_signaling::auth::Authenticator::new(&vc_signaling::config::AuthSettings {
        mode: vc_signaling::config::AuthMode::Jwt,
        jwt_secret: SECRET.into(),
        ..Default::default()
    });
    let token = auth
        .mint("board", "user-42", None, Duration::from_secs(60))
        .expect("mints");
    let mut ann = Client::connect(&node.ws_url()).await;
    ann.send(json!({"type": "join", "room": "board", "name": "Ann", "token": token}))
        .await;
    ann.recv_type("joined").await;
    let (status, headers, body) =
        common::http_get_with_headers(node.port, "/api/rooms/board").await;
    assert_eq!(status, 401, "{body}");
    assert!(headers.contains("www-authenticate: bearer"), "{headers}");
    assert!(!body.contains("members"), "{body}");
    let (status, body) = common::http_get_bearer(node.port, "/api/rooms/other", &token).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("auth-wrong-room"), "{body}");
    let (status, body) =
        common::http_get_bearer(node.port, "/api/rooms/board", "abc.def.ghi").await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = common::http_get_bearer(node.port, "/api/rooms/board", &token).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""members":1"#), "{body}");
}

#[tokio::test]
async fn a_resumed_seat_gets_what_was_said_while_its_socket_was_gone() {
    let node = spawn_node(|s| s.resume.window = Duration::from_secs(5)).await;
    let url = node.ws_url();
    let (mut ann, _) = Client::joined(&url, "gap", "Ann").await;
    let (bob, _) = Client::joined(&url, "gap", "Bob").await;
    ann.recv_type("peer-joined").await;
    ann.send(json!({"type": "chat", "text": "before"})).await;
    let token = bob.resume_token.clone();
    bob.drop_connection();
    ann.send(json!({"type": "chat", "text": "while you were away"}))
        .await;
    ann.send(json!({"type": "ping", "id": 1})).await;
    ann.recv_type("pong").await;

    let mut bob = Client::connect(&url).await;
    bob.send(json!({"type": "resume", "token": token})).await;
    let resumed = bob.recv_type("resumed").await;
    let texts: Vec<&str> = resumed["chat"]
        .as_array()
        .expect("history")
        .iter()
        .map(|m| m["text"].as_str().expect("text"))
        .collect();
    assert_eq!(texts, ["before", "while you were away"]);
    // Nothing twice, and the seat hears what comes next.
    bob.expect_silence(Duration::from_millis(150)).await;
    ann.send(json!({"type": "chat", "text": "welcome back"}))
        .await;
    assert_eq!(bob.recv_type("chat").await["text"], "welcome back");
}
