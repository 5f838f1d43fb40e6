//! Several real node processes on one real Redis: what a fleet behind a load
//! balancer must do, including its faults.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed expectation should stop the test with its message"
)]

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::fleet::{fleet, Backing, Keys, Node};
use common::{call_states, member_ids, Client, Event};
use serde_json::json;
use vc_fleet::Data;

/// Every fleet test runs twice: on a standalone Redis with plain pub/sub, and on a
/// three-shard Redis Cluster with sharded pub/sub.
macro_rules! on_every_backing {
    ($($test:ident),* $(,)?) => {
        mod standalone {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test(super::Backing::Standalone).await;
                }
            )*
        }
        mod redis_cluster {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test(super::Backing::Cluster).await;
                }
            )*
        }
    };
}

on_every_backing!(
    peers_on_different_nodes_negotiate,
    a_room_of_four_on_three_nodes_sees_every_arrival_and_departure_once,
    two_nodes_racing_for_the_last_seat_never_both_win,
    a_burst_across_nodes_arrives_in_order,
    a_killed_node_s_peers_leave_within_the_bound_and_leave_no_ghosts,
    a_redis_restart_flips_readiness_then_negotiation_works_again,
    an_empty_redis_gets_a_moved_seat_back_from_the_node_holding_it_not_from_the_node_that_parked_it,
    resume_on_another_node_without_a_flap_and_expiry_after_the_window,
    a_draining_node_hands_its_clients_to_the_others,
    a_forged_resume_on_another_node_changes_nothing,
    two_resumes_of_one_seat_on_two_nodes_leave_one_socket_holding_it,
    room_wide_messages_cross_nodes_and_a_late_joiner_elsewhere_gets_history_and_hands,
    call_state_set_on_one_node_is_in_members_on_another_and_survives_an_empty_redis,
    chat_sent_while_someone_joins_on_another_node_arrives_exactly_once_in_order,
    relays_to_a_dropped_peer_are_replayed_exactly_once_in_order_on_another_node,
    after_an_empty_redis_restart_numbering_goes_on_and_a_lost_gap_is_reported,
    a_mute_made_before_another_node_is_back_from_an_empty_redis_reaches_its_seats,
);

/// Sends `sig` (`-STOP`, `-CONT`) to the node process `pid`: a node made to
/// sleep through another's resync.
fn signal(pid: impl std::fmt::Display, sig: &str) {
    let pid = pid.to_string();
    let status = std::process::Command::new("kill")
        .args([sig, pid.as_str()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill {sig} {pid}");
}

async fn negotiate_across(a: &Node, b: &Node, room: &str) {
    let (mut ann, _) = Client::joined(&a.ws_url(), room, "Ann").await;
    let (mut bob, joined) = Client::joined(&b.ws_url(), room, "Bob").await;
    assert_eq!(member_ids(&joined), [ann.peer.clone()]);
    assert_eq!(ann.welcome["node"], a.id.as_str());
    assert_eq!(bob.welcome["node"], b.id.as_str());
    assert_eq!(
        ann.recv_type("peer-joined").await["peer"]["id"],
        bob.peer.as_str()
    );

    bob.send(json!({"type": "offer", "to": ann.peer, "sdp": "v=0 offer"}))
        .await;
    assert_eq!(ann.recv_type("offer").await["from"], bob.peer.as_str());
    ann.send(json!({"type": "answer", "to": bob.peer, "sdp": "v=0 answer"}))
        .await;
    assert_eq!(bob.recv_type("answer").await["sdp"], "v=0 answer");
    for i in 0..10 {
        let candidate = json!({"candidate": format!("candidate:{i} 1 udp 1 127.0.0.1 {} typ host", 5000 + i), "sdpMid": "0"});
        ann.send(json!({"type": "candidate", "to": bob.peer, "candidate": candidate}))
            .await;
        bob.send(json!({"type": "candidate", "to": ann.peer, "candidate": candidate}))
            .await;
    }
    for i in 0..10 {
        let expected = format!("candidate:{i} 1 udp 1 127.0.0.1 {} typ host", 5000 + i);
        assert_eq!(
            bob.recv_type("candidate").await["candidate"]["candidate"],
            expected.as_str()
        );
        assert_eq!(
            ann.recv_type("candidate").await["candidate"]["candidate"],
            expected.as_str()
        );
    }
    // A target on another node is checked as strictly as a local one.
    ann.send(json!({"type": "offer", "to": "00000000deadbeef", "sdp": "v=0"}))
        .await;
    ann.expect_error("unknown-peer").await;
}

async fn peers_on_different_nodes_negotiate(backing: Backing) {
    let (_redis, nodes) = fleet(backing, 2, &[]);
    negotiate_across(&nodes[0], &nodes[1], "across").await;
    let (_, metrics) = common::http_get(nodes[0].port, "/metrics").await;
    let cross = metrics
        .lines()
        .find(|l| l.starts_with("vc_relay_latency_seconds_count") && l.contains("cross_node"))
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse::<u64>().ok())
        .unwrap_or_default();
    // The answer and ten candidates from the other node.
    assert_eq!(cross, 11, "{metrics}");
}

/// Sharded pub/sub on a standalone Redis 7 too: one deployment can switch it on
/// before moving to a Cluster.
#[tokio::test]
async fn sharded_pubsub_on_a_standalone_redis() {
    let (_redis, nodes) = fleet(Backing::Standalone, 2, &[("VC_REDIS__SHARDED", "true")]);
    negotiate_across(&nodes[0], &nodes[1], "sharded").await;
}

async fn a_room_of_four_on_three_nodes_sees_every_arrival_and_departure_once(backing: Backing) {
    let (_redis, nodes) = fleet(backing, 3, &[]);
    let placement = [0, 1, 2, 0];
    let mut peers: Vec<Client> = Vec::new();
    for (i, node) in placement.iter().enumerate() {
        let (client, joined) =
            Client::joined(&nodes[*node].ws_url(), "four", &format!("P{i}")).await;
        let expected: Vec<String> = peers.iter().map(|p| p.peer.clone()).collect();
        assert_eq!(member_ids(&joined), expected);
        for earlier in &mut peers {
            let seen = earlier.recv_type("peer-joined").await;
            assert_eq!(seen["peer"]["id"], client.peer.as_str());
        }
        peers.push(client);
    }
    // Everyone leaves, in turn; each remaining peer hears of each departure once.
    while let Some(mut leaving) = (!peers.is_empty()).then(|| peers.remove(0)) {
        leaving.send(json!({"type": "leave"})).await;
        leaving.recv_type("left").await;
        for stayer in &mut peers {
            let left = stayer.recv_type("peer-left").await;
            assert_eq!(left["peer"], leaving.peer.as_str());
            assert_eq!(left["reason"], "left");
        }
    }
}

async fn two_nodes_racing_for_the_last_seat_never_both_win(backing: Backing) {
    let (_redis, nodes) = fleet(backing, 2, &[("VC_ROOMS__CAPACITY", "2")]);
    for round in 0..25 {
        let room = format!("race-{round}");
        let (_first, _) = Client::joined(&nodes[0].ws_url(), &room, "First").await;
        let mut a = Client::connect(&nodes[0].ws_url()).await;
        let mut b = Client::connect(&nodes[1].ws_url()).await;
        let join = json!({"type": "join", "room": room, "name": "Racer"});
        tokio::join!(a.send(join.clone()), b.send(join));
        let (ra, rb) = tokio::join!(a.recv(), b.recv());
        let mut outcomes = [
            ra["type"].as_str().map(str::to_owned),
            rb["type"].as_str().map(str::to_owned),
        ];
        outcomes.sort();
        assert_eq!(
            outcomes,
            [Some("error".to_owned()), Some("joined".to_owned())],
            "round {round}: {ra} / {rb}"
        );
        let error = if ra["type"] == "error" { &ra } else { &rb };
        assert_eq!(error["code"], "room-full");
    }
}

async fn a_burst_across_nodes_arrives_in_order(backing: Backing) {
    let (_redis, nodes) = fleet(backing, 2, &[("VC_LIMITS__MESSAGE_BURST", "1000")]);
    let (mut ann, _) = Client::joined(&nodes[0].ws_url(), "order", "Ann").await;
    let (mut bob, _) = Client::joined(&nodes[1].ws_url(), "order", "Bob").await;
    ann.recv_type("peer-joined").await;
    bob.send(json!({"type": "offer", "to": ann.peer, "sdp": "v=0"}))
        .await;
    for i in 0..500 {
        bob.send(json!({"type": "candidate", "to": ann.peer, "candidate": {"candidate": i}}))
            .await;
    }
    assert_eq!(ann.recv_type("offer").await["sdp"], "v=0");
    for i in 0..500 {
        assert_eq!(
            ann.recv_type("candidate").await["candidate"]["candidate"],
            i
        );
    }
}

async fn a_killed_node_s_peers_leave_within_the_bound_and_leave_no_ghosts(backing: Backing) {
    let (redis, mut nodes) = fleet(backing, 2, &[]);
    let (mut ann, _) = Client::joined(&nodes[0].ws_url(), "crash", "Ann").await;
    let (bob, _) = Client::joined(&nodes[1].ws_url(), "crash", "Bob").await;
    let (cat, _) = Client::joined(&nodes[1].ws_url(), "crash", "Cat").await;
    ann.recv_type("peer-joined").await;
    ann.recv_type("peer-joined").await;
    let killed_at = Instant::now();
    nodes[1].kill();
    let mut gone = HashMap::new();
    for _ in 0..2 {
        let left = ann.recv_type("peer-left").await;
        assert_eq!(left["reason"], "node-lost", "{left}");
        gone.insert(
            left["peer"].as_str().unwrap_or_default().to_owned(),
            killed_at.elapsed(),
        );
    }
    assert!(gone.contains_key(&bob.peer) && gone.contains_key(&cat.peer));
    // Bound: node_ttl (1.5 s) + heartbeat (0.3 s) + delivery, well under 15 s.
    let slowest = gone.values().max().copied().unwrap_or_default();
    assert!(slowest < Duration::from_secs(5), "took {slowest:?}");
    let left = redis.hkeys("vc:{crash}:members").await;
    assert_eq!(left, [ann.peer.clone()]);
    let (_, metrics) = common::http_get(nodes[0].port, "/metrics").await;
    assert!(
        metrics.contains(r#"vc_peers_swept_total{node="node-0"} 2"#),
        "{metrics}"
    );
    println!("killed node's peers gone after {slowest:?}");
}

async fn a_redis_restart_flips_readiness_then_negotiation_works_again(backing: Backing) {
    let (mut redis, nodes) = fleet(backing, 2, &[]);
    let (mut ann, _) = Client::joined(&nodes[0].ws_url(), "outage", "Ann").await;
    let (mut bob, _) = Client::joined(&nodes[1].ws_url(), "outage", "Bob").await;
    let (mut dan, _) = Client::joined(&nodes[0].ws_url(), "outage", "Dan").await;
    for _ in 0..2 {
        ann.recv_type("peer-joined").await;
    }
    bob.recv_type("peer-joined").await;

    redis.kill();
    let down_at = Instant::now();
    for node in &nodes {
        node.wait_ready(false, Duration::from_secs(10))
            .expect("readiness falls");
    }
    // Sessions stay connected. Dan is on Ann's node: her offer is handed over
    // at once, unnumbered. Bob is on the other node: hers is kept, not refused.
    ann.send(json!({"type": "offer", "id": 1, "to": dan.peer, "sdp": "v=0 dan"}))
        .await;
    let to_dan = dan.recv().await;
    assert_eq!(to_dan["sdp"], "v=0 dan", "{to_dan}");
    for n in 2..5 {
        ann.send(json!({"type": "offer", "id": n, "to": bob.peer, "sdp": format!("v=0 kept {n}")}))
            .await;
    }
    bob.expect_silence(Duration::from_millis(300)).await;

    redis.restart(Data::Empty).expect("redis restarts");
    for node in &nodes {
        node.wait_ready(true, Duration::from_secs(20))
            .expect("readiness returns");
    }
    let recovered = down_at.elapsed();
    ann.send(json!({"type": "offer", "to": bob.peer, "sdp": "v=0 after"}))
        .await;
    // What was kept arrives first, in order, numbered like any other frame.
    for n in 2..5 {
        assert_eq!(bob.recv_type("offer").await["sdp"], format!("v=0 kept {n}"));
    }
    assert_eq!(bob.recv_type("offer").await["sdp"], "v=0 after");
    // Nothing was refused to Ann.
    ann.send(json!({"type": "ping", "id": 9})).await;
    assert_eq!(ann.recv_type("pong").await["id"], 9);
    bob.send(json!({"type": "answer", "to": ann.peer, "sdp": "v=0 back"}))
        .await;
    assert_eq!(ann.recv_type("answer").await["sdp"], "v=0 back");
    // Presence was written back: a newcomer sees all three.
    let (_cat, joined) = Client::joined(&nodes[1].ws_url(), "outage", "Cat").await;
    assert_eq!(member_ids(&joined).len(), 3);
    for node in &nodes {
        let (_, metrics) = common::http_get(node.port, "/metrics").await;
        assert!(
            metrics.contains(&format!(
                r#"vc_bus_resubscriptions_total{{node="{}"}} 1"#,
                node.id
            )),
            "{metrics}"
        );
    }
    println!("cross-node negotiation down for {recovered:?} (including the test's own restart)");
}

/// After a resume on another node, the node that parked the seat still holds its
/// parked copy until the window passes. When Redis comes back empty, the resync
/// of that node must not win over the node the person is attached to, whichever
/// resyncs first; here the parking node is made to go first.
async fn an_empty_redis_gets_a_moved_seat_back_from_the_node_holding_it_not_from_the_node_that_parked_it(
    backing: Backing,
) {
    let (mut redis, nodes) = fleet(backing, 2, &[("VC_RESUME__WINDOW", "60s")]);
    let (mut ann, _) = Client::joined(&nodes[0].ws_url(), "moved", "Ann").await;
    let (bob, _) = Client::joined(&nodes[1].ws_url(), "moved", "Bob").await;
    ann.recv_type("peer-joined").await;
    let (bob_id, token) = (bob.peer.clone(), bob.resume_token.clone());
    bob.drop_connection();
    let mut bob = Client::connect(&nodes[0].ws_url()).await;
    bob.send(json!({"type": "resume", "token": token})).await;
    bob.recv_type("resumed").await;

    redis.kill();
    for node in &nodes {
        node.wait_ready(false, Duration::from_secs(10))
            .expect("readiness falls");
    }
    let holder = nodes[0].pid().expect("node-1 runs");
    let signal = |sig: &str| signal(holder, sig);
    // The attached node sleeps while the parking node writes its seats back.
    signal("-STOP");
    redis.restart(Data::Empty).expect("redis restarts");
    let parked_first = nodes[1].wait_ready(true, Duration::from_secs(20));
    signal("-CONT");
    parked_first.expect("the parking node resyncs");
    nodes[0]
        .wait_ready(true, Duration::from_secs(20))
        .expect("the attached node resyncs");

    let record = redis
        .hget("vc:{moved}:members", &bob_id)
        .await
        .expect("Bob's seat is written back");
    let record: serde_json::Value = serde_json::from_str(&record).expect("a seat record");
    assert_eq!(record["node"], nodes[0].id.as_str(), "{record}");
    assert!(record["parked"].is_null(), "the seat is attached: {record}");
    ann.send(json!({"type": "offer", "to": bob_id, "sdp": "v=0 after"}))
        .await;
    assert_eq!(bob.recv_type("offer").await["sdp"], "v=0 after");
}

async fn resume_on_another_node_without_a_flap_and_expiry_after_the_window(backing: Backing) {
    let (_redis, nodes) = fleet(backing, 2, &[("VC_RESUME__WINDOW", "2s")]);
    let (mut ann, _) = Client::joined(&nodes[0].ws_url(), "moving", "Ann").await;
    let (bob, _) = Client::joined(&nodes[1].ws_url(), "moving", "Bob").await;
    ann.recv_type("peer-joined").await;
    let (bob_id, token) = (bob.peer.clone(), bob.resume_token.clone());
    bob.drop_connection();

    let mut bob = Client::connect(&nodes[0].ws_url()).await;
    bob.send(json!({"type": "resume", "token": token})).await;
    let resumed = bob.recv_type("resumed").await;
    assert_eq!(resumed["peer"], bob_id.as_str());
    assert_eq!(member_ids(&resumed), [ann.peer.clone()]);
    ann.send(json!({"type": "offer", "to": bob_id, "sdp": "v=0"}))
        .await;
    bob.recv_type("offer").await;
    // Longer than the window: the old node's expiry timer must not fire on a
    // seat that moved.
    ann.expect_silence(Duration::from_millis(2500)).await;

    // Now drop for good: the room is told once the window passes.
    let token = bob.resume_token.clone();
    bob.drop_connection();
    let left = ann.recv_type("peer-left").await;
    assert_eq!(left["reason"], "disconnected");
    let mut late = Client::connect(&nodes[1].ws_url()).await;
    late.send(json!({"type": "resume", "token": token})).await;
    late.expect_error("resume-failed").await;
}

async fn a_draining_node_hands_its_clients_to_the_others(backing: Backing) {
    let (_redis, mut nodes) = fleet(backing, 2, &[]);
    let (mut ann, _) = Client::joined(&nodes[0].ws_url(), "drain", "Ann").await;
    let mut movers = Vec::new();
    for name in ["Bob", "Cat", "Dan"] {
        let (client, _) = Client::joined(&nodes[1].ws_url(), "drain", name).await;
        ann.recv_type("peer-joined").await;
        movers.push(client);
    }
    for (i, earlier) in movers.iter_mut().enumerate() {
        for _ in i + 1..3 {
            earlier.recv_type("peer-joined").await;
        }
    }
    nodes[1].terminate();
    nodes[1]
        .wait_ready(false, Duration::from_secs(5))
        .expect("a draining node is not ready");
    // A draining node takes no new sockets: the load balancer sends them on.
    assert!(tokio_tungstenite::connect_async(nodes[1].ws_url())
        .await
        .is_err());
    let mut moved = Vec::new();
    for mut old in movers {
        let notice = loop {
            let m = old.recv().await;
            if m["type"] == "reconnect" {
                break m;
            }
        };
        assert_eq!(notice["reason"], "draining");
        let mut new = Client::connect(&nodes[0].ws_url()).await;
        new.send(json!({"type": "resume", "token": old.resume_token}))
            .await;
        let resumed = new.recv_type("resumed").await;
        assert_eq!(resumed["peer"], old.peer.as_str());
        new.adopt(&resumed);
        old.close(4000).await;
        moved.push(new);
    }
    let took = nodes[1]
        .wait_exit(Duration::from_secs(15))
        .expect("the drained node exits cleanly");
    assert!(
        took < Duration::from_secs(10),
        "drain waited for its timeout: {took:?}"
    );
    // Nobody left: the room still has five, and negotiation works on the new node.
    ann.expect_silence(Duration::from_millis(500)).await;
    ann.send(json!({"type": "offer", "to": moved[0].peer, "sdp": "v=0"}))
        .await;
    moved[0].recv_type("offer").await;
}

async fn a_forged_resume_on_another_node_changes_nothing(backing: Backing) {
    let (_redis, nodes) = fleet(backing, 2, &[]);
    let (mut victim, _) = Client::joined(&nodes[0].ws_url(), "forged", "Victim").await;
    let (mut partner, _) = Client::joined(&nodes[1].ws_url(), "forged", "Partner").await;
    victim.recv_type("peer-joined").await;
    for node in &nodes {
        let mut attacker = Client::connect(&node.ws_url()).await;
        for secret in ["00", "ffffffffffffffffffffffffffffffff"] {
            attacker
                .send(
                    json!({"type": "resume", "token": format!("forged.{}.{secret}", victim.peer)}),
                )
                .await;
            attacker.expect_error("resume-failed").await;
        }
    }
    partner
        .send(json!({"type": "app-data", "to": victim.peer, "data": "still here"}))
        .await;
    assert_eq!(victim.recv_type("app-data").await["data"], "still here");
    victim
        .send(json!({"type": "app-data", "to": partner.peer, "data": "yes"}))
        .await;
    assert_eq!(partner.recv_type("app-data").await["data"], "yes");
    let (_late, joined) = Client::joined(&nodes[1].ws_url(), "forged", "Late").await;
    assert_eq!(
        member_ids(&joined),
        [victim.peer.clone(), partner.peer.clone()]
    );
    victim.recv_type("peer-joined").await;
    victim.expect_silence(Duration::from_millis(200)).await;
}

async fn two_resumes_of_one_seat_on_two_nodes_leave_one_socket_holding_it(backing: Backing) {
    let (_redis, nodes) = fleet(backing, 2, &[("VC_RESUME__WINDOW", "2s")]);
    let (mut ann, _) = Client::joined(&nodes[0].ws_url(), "twice", "Ann").await;
    let (bob, _) = Client::joined(&nodes[1].ws_url(), "twice", "Bob").await;
    ann.recv_type("peer-joined").await;
    let (bob_id, token) = (bob.peer.clone(), bob.resume_token.clone());
    bob.drop_connection();
    let mut x = Client::connect(&nodes[0].ws_url()).await;
    let mut y = Client::connect(&nodes[1].ws_url()).await;
    let resume = json!({"type": "resume", "token": token});
    // Both requests are on their way before either answer is read.
    x.send(resume.clone()).await;
    y.send(resume).await;
    let mut resumed = Vec::new();
    for mut client in [x, y] {
        let reply = client.recv().await;
        match reply["type"].as_str() {
            Some("resumed") => {
                assert_eq!(reply["peer"], bob_id.as_str());
                client.adopt(&reply);
                resumed.push(client);
            }
            _ => assert_eq!(reply["code"], "resume-failed", "{reply}"),
        }
    }
    println!("two simultaneous resumes: {} got `resumed`", resumed.len());
    // When both got the seat, the second read it after the first had moved it:
    // the first is closed as resumed elsewhere.
    let mut holders = Vec::new();
    if resumed.len() == 2 {
        for mut client in resumed {
            match client.next_event(Duration::from_secs(2)).await {
                Some(Event::Closed(Some(frame))) if u16::from(frame.code) == 4001 => {}
                None => holders.push(client),
                other => panic!("a resumed socket got {other:?}"),
            }
        }
    } else {
        holders = resumed;
    }
    assert_eq!(holders.len(), 1, "exactly one socket holds the seat");
    let mut holder = holders.pop().expect("one holder");
    ann.send(json!({"type": "offer", "to": bob_id, "sdp": "v=0"}))
        .await;
    assert_eq!(holder.recv_type("offer").await["from"], ann.peer.as_str());
    ann.expect_silence(Duration::from_millis(200)).await;
    // The seat is the holder's in presence too: it is parked and expires with it.
    holder.drop_connection();
    let left = ann.recv_type("peer-left").await;
    assert_eq!(left["peer"], bob_id.as_str());
    assert_eq!(left["reason"], "disconnected");
}

async fn room_wide_messages_cross_nodes_and_a_late_joiner_elsewhere_gets_history_and_hands(
    backing: Backing,
) {
    let (redis, nodes) = fleet(backing, 2, &[("VC_CHAT__HISTORY", "3")]);
    let (mut ann, _) = Client::joined(&nodes[0].ws_url(), "talk", "Ann").await;
    let (mut bob, _) = Client::joined(&nodes[1].ws_url(), "talk", "Bob").await;
    let (mut cat, _) = Client::joined(&nodes[0].ws_url(), "talk", "Cat").await;
    let (mut dan, _) = Client::joined(&nodes[1].ws_url(), "elsewhere", "Dan").await;
    ann.recv_type("peer-joined").await;
    ann.recv_type("peer-joined").await;
    bob.recv_type("peer-joined").await;

    for i in 0..5 {
        ann.send(json!({"type": "chat", "text": format!("line {i}")}))
            .await;
    }
    for i in 0..5 {
        for other in [&mut bob, &mut cat] {
            let chat = other.recv_type("chat").await;
            assert_eq!(chat["text"], format!("line {i}"));
            assert_eq!(chat["from"], ann.peer.as_str());
            assert_eq!(chat["name"], "Ann");
        }
    }
    bob.send(json!({"type": "reaction", "emoji": "👏"})).await;
    bob.send(json!({"type": "call-state", "hand": true})).await;
    for other in [&mut ann, &mut cat] {
        assert_eq!(other.recv_type("reaction").await["from"], bob.peer.as_str());
        let state = other.recv_type("peer-state").await;
        assert_eq!(
            (state["peer"].as_str(), state["hand"].as_bool()),
            (Some(bob.peer.as_str()), Some(true))
        );
    }
    // Exactly once: nothing more for anyone, nothing for the sender or the other room.
    ann.expect_silence(Duration::from_millis(200)).await;
    bob.expect_silence(Duration::from_millis(10)).await;
    cat.expect_silence(Duration::from_millis(10)).await;
    dan.expect_silence(Duration::from_millis(10)).await;

    // A joiner on the node where Ann is not: the last three lines, Bob's hand.
    let (eve, joined) = Client::joined(&nodes[1].ws_url(), "talk", "Eve").await;
    let texts: Vec<&str> = joined["chat"]
        .as_array()
        .expect("history")
        .iter()
        .map(|m| m["text"].as_str().expect("text"))
        .collect();
    assert_eq!(texts, ["line 2", "line 3", "line 4"]);
    let hands: Vec<(&str, bool)> = joined["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| (m["name"].as_str().expect("name"), m["hand"] == true))
        .collect();
    assert_eq!(hands, [("Ann", false), ("Bob", true), ("Cat", false)]);
    assert_eq!(redis.llen("vc:{talk}:chat").await, 3);

    // The last seat out takes the history along.
    let mut everyone = vec![ann, bob, cat, eve];
    while let Some(mut client) = everyone.pop() {
        assert!(
            redis.exists("vc:{talk}:chat").await,
            "kept while someone is there"
        );
        client.send(json!({"type": "leave"})).await;
        // Past the arrivals and departures it has not read yet.
        while client.recv().await["type"] != "left" {}
    }
    assert!(
        !redis.exists("vc:{talk}:chat").await,
        "history of an emptied room"
    );
}

/// Each peer's call state lives with its seat: a joiner on another node reads
/// it in `members`, and when Redis comes back empty the nodes write it back
/// with the seats (REASSERT), so that the next joiner still reads it and the
/// next change applies to it.
async fn call_state_set_on_one_node_is_in_members_on_another_and_survives_an_empty_redis(
    backing: Backing,
) {
    let (mut redis, nodes) = fleet(backing, 2, &[]);
    let (mut ann, _) = Client::joined(&nodes[0].ws_url(), "state", "Ann").await;
    let (mut bob, _) = Client::joined(&nodes[1].ws_url(), "state", "Bob").await;
    ann.recv_type("peer-joined").await;
    ann.send(json!({"type": "call-state", "muted": true, "cameraOff": true}))
        .await;
    assert_eq!(
        bob.recv_type("peer-state").await,
        json!({"type": "peer-state", "peer": ann.peer, "hand": false,
               "muted": true, "cameraOff": true, "sharing": false})
    );
    bob.send(json!({"type": "call-state", "sharing": true, "hand": true}))
        .await;
    assert_eq!(ann.recv_type("peer-state").await["sharing"], true);

    let expected = [
        ("Ann".to_owned(), json!({"muted": true, "cameraOff": true})),
        ("Bob".to_owned(), json!({"hand": true, "sharing": true})),
    ];
    let (_cat, joined) = Client::joined(&nodes[1].ws_url(), "state", "Cat").await;
    assert_eq!(call_states(&joined), expected);
    let (_dan, joined) = Client::joined(&nodes[0].ws_url(), "state", "Dan").await;
    assert_eq!(call_states(&joined)[..2], expected);

    // Ann hears of Cat and Dan before Redis goes: an arrival still on its way to
    // her node when Redis is killed is lost with the subscription.
    ann.recv_type("peer-joined").await;
    ann.recv_type("peer-joined").await;
    redis.kill();
    for node in &nodes {
        node.wait_ready(false, Duration::from_secs(10))
            .expect("readiness falls");
    }
    // Refused at once while Redis is away, and nothing changes.
    ann.send(json!({"type": "call-state", "id": 7, "hand": true}))
        .await;
    assert_eq!(ann.expect_error("unavailable").await["id"], 7);
    redis.restart(Data::Empty).expect("redis restarts");
    for node in &nodes {
        node.wait_ready(true, Duration::from_secs(20))
            .expect("readiness returns");
    }
    let record = redis
        .hget("vc:{state}:members", &ann.peer)
        .await
        .expect("Ann's seat is written back");
    let record: serde_json::Value = serde_json::from_str(&record).expect("a seat record");
    assert_eq!(
        (&record["muted"], &record["cameraOff"]),
        (&json!(true), &json!(true)),
        "{record}"
    );
    let (_eve, joined) = Client::joined(&nodes[1].ws_url(), "state", "Eve").await;
    assert_eq!(call_states(&joined)[..2], expected);

    // A change after the restart applies to the state written back. Bob reads
    // past the arrivals since, any re-announcement after the restart, and the
    // states his node told him again once it was back (all as they were).
    ann.send(json!({"type": "call-state", "muted": false}))
        .await;
    let mut state = bob.recv().await;
    while state["type"] != "peer-state" || state["muted"] == true {
        assert!(
            state["type"] == "peer-joined" || state["type"] == "peer-state",
            "{state}"
        );
        state = bob.recv().await;
    }
    assert_eq!(
        state,
        json!({"type": "peer-state", "peer": ann.peer, "hand": false,
               "muted": false, "cameraOff": true, "sharing": false})
    );
}

/// After Redis comes back empty, a node that writes its seats back late has
/// missed every room-wide message published before: no seat of its was a
/// member then. Its resync reads the room's call states once its seats are
/// back and tells them, so that a mute made meanwhile still reaches them.
async fn a_mute_made_before_another_node_is_back_from_an_empty_redis_reaches_its_seats(
    backing: Backing,
) {
    let (mut redis, nodes) = fleet(backing, 2, &[]);
    let (mut ann, _) = Client::joined(&nodes[0].ws_url(), "late-state", "Ann").await;
    let (mut bob, _) = Client::joined(&nodes[1].ws_url(), "late-state", "Bob").await;
    ann.recv_type("peer-joined").await;
    redis.kill();
    for node in &nodes {
        node.wait_ready(false, Duration::from_secs(10))
            .expect("readiness falls");
    }
    let late = nodes[1].pid().expect("node-2 runs");
    let signal = |sig: &str| signal(late, sig);
    signal("-STOP");
    redis.restart(Data::Empty).expect("redis restarts");
    let first = nodes[0].wait_ready(true, Duration::from_secs(20));
    if first.is_err() {
        signal("-CONT");
    }
    first.expect("Ann's node resyncs");
    // Taken by Ann's node, told to a room where Bob has no seat yet.
    ann.send(json!({"type": "call-state", "id": 3, "muted": true}))
        .await;
    ann.send(json!({"type": "ping", "id": 4})).await;
    assert_eq!(ann.recv_type("pong").await["id"], 4, "not refused");
    signal("-CONT");
    nodes[1]
        .wait_ready(true, Duration::from_secs(20))
        .expect("Bob's node resyncs");
    let state = bob.recv_type("peer-state").await;
    assert_eq!(
        state,
        json!({"type": "peer-state", "peer": ann.peer, "hand": false,
               "muted": true, "cameraOff": false, "sharing": false})
    );
}

async fn chat_sent_while_someone_joins_on_another_node_arrives_exactly_once_in_order(
    backing: Backing,
) {
    let (_redis, nodes) = fleet(backing, 2, &[("VC_LIMITS__BROADCAST_BURST", "200")]);
    for round in 0..5 {
        let room = format!("join-race-{round}");
        let (mut ann, _) = Client::joined(&nodes[0].ws_url(), &room, "Ann").await;
        let mut bob = Client::connect(&nodes[1].ws_url()).await;
        let send = async {
            for i in 0..40 {
                ann.send(json!({"type": "chat", "text": format!("{i}")}))
                    .await;
            }
        };
        let join = async {
            tokio::time::sleep(Duration::from_millis(round * 2)).await;
            bob.send(json!({"type": "join", "room": room, "name": "Bob"}))
                .await;
            bob.recv_type("joined").await
        };
        let ((), joined) = tokio::join!(send, join);
        let mut seen: Vec<String> = joined["chat"]
            .as_array()
            .map(|history| {
                history
                    .iter()
                    .map(|m| m["text"].as_str().expect("text").to_owned())
                    .collect()
            })
            .unwrap_or_default();
        let from_history = seen.len();
        while seen.len() < 40 {
            let chat = bob.recv_type("chat").await;
            seen.push(chat["text"].as_str().expect("text").to_owned());
        }
        let expected: Vec<String> = (0..40).map(|i| i.to_string()).collect();
        assert_eq!(
            seen, expected,
            "round {round}: {from_history} from the history"
        );
        eprintln!(
            "join race round {round}: {from_history} of 40 from the history, the rest as messages"
        );
        bob.expect_silence(Duration::from_millis(200)).await;
    }
}

/// Bob's socket drops; Ann relays while his seat waits; Bob resumes on the other
/// node naming the last frame he processed and gets exactly what he missed.
async fn relays_to_a_dropped_peer_are_replayed_exactly_once_in_order_on_another_node(
    backing: Backing,
) {
    let (_redis, nodes) = fleet(backing, 2, &[("VC_RESUME__WINDOW", "30s")]);
    let (mut ann, _) = Client::joined(&nodes[0].ws_url(), "replay", "Ann").await;
    let (mut bob, joined) = Client::joined(&nodes[1].ws_url(), "replay", "Bob").await;
    let stream = joined["stream"]
        .as_str()
        .expect("joined names its stream")
        .to_owned();
    assert_eq!(stream.len(), 16, "{joined}");
    ann.recv_type("peer-joined").await;
    ann.send(json!({"type": "offer", "to": bob.peer, "sdp": "v=0 before"}))
        .await;
    assert_eq!(bob.recv_type("offer").await["sdp"], "v=0 before");
    let (bob_id, token, processed) = (bob.peer.clone(), bob.resume_token.clone(), bob.last_seq);
    bob.drop_connection();

    const MISSED: usize = 20;
    for i in 0..MISSED {
        ann.send(
            json!({"type": "candidate", "to": bob_id, "candidate": {"candidate": format!("c{i}")}}),
        )
        .await;
    }
    // A round trip through Ann's node: every relay above has been published.
    ann.send(json!({"type": "ping", "id": 1})).await;
    ann.recv_type("pong").await;

    let mut bob = Client::connect(&nodes[0].ws_url()).await;
    bob.last_seq = processed;
    bob.send(json!({"type": "resume", "token": token, "lastSeq": processed, "stream": stream, "ack": processed}))
        .await;
    let resumed = bob.recv_type("resumed").await;
    assert_eq!(resumed["replay"], "complete", "{resumed}");
    assert_eq!(resumed["stream"], stream.as_str());
    for i in 0..MISSED {
        let candidate = bob.recv_type("candidate").await;
        assert_eq!(candidate["candidate"]["candidate"], format!("c{i}"));
    }
    assert_eq!(bob.last_seq, processed + MISSED as u64, "no gap, no double");
    // Nothing more: no copy from the old node, no second replay.
    bob.expect_silence(Duration::from_millis(500)).await;
    ann.send(json!({"type": "offer", "to": bob_id, "sdp": "v=0 after"}))
        .await;
    assert_eq!(bob.recv_type("offer").await["sdp"], "v=0 after");
    assert_eq!(bob.last_seq, processed + MISSED as u64 + 1);
}

/// Redis restarts empty and loses every buffer; the nodes write each seat's last
/// seq back, so a seat's numbering goes on instead of starting at 1 again (its
/// client would take every new frame for a duplicate). A client that had not
/// processed what the lost buffer held is told its replay is incomplete.
async fn after_an_empty_redis_restart_numbering_goes_on_and_a_lost_gap_is_reported(
    backing: Backing,
) {
    let (mut redis, nodes) = fleet(backing, 2, &[("VC_RESUME__WINDOW", "60s")]);
    let (mut ann, _) = Client::joined(&nodes[0].ws_url(), "amnesia", "Ann").await;
    let (mut bob, joined) = Client::joined(&nodes[1].ws_url(), "amnesia", "Bob").await;
    let stream = joined["stream"].as_str().expect("a stream").to_owned();
    ann.recv_type("peer-joined").await;
    ann.send(json!({"type": "offer", "to": bob.peer, "sdp": "v=0 processed"}))
        .await;
    bob.recv_type("offer").await;
    let processed = bob.last_seq;
    // Queued to Bob but, as far as he will say, never processed.
    ann.send(json!({"type": "offer", "to": bob.peer, "sdp": "v=0 unprocessed"}))
        .await;
    bob.recv_type("offer").await;
    let sent = bob.last_seq;

    redis.kill();
    for node in &nodes {
        node.wait_ready(false, Duration::from_secs(10))
            .expect("readiness falls");
    }
    redis.restart(Data::Empty).expect("redis restarts");
    for node in &nodes {
        node.wait_ready(true, Duration::from_secs(20))
            .expect("readiness returns");
    }
    let (bob_id, token) = (bob.peer.clone(), bob.resume_token.clone());
    bob.drop_connection();
    ann.send(json!({"type": "offer", "to": bob_id, "sdp": "v=0 after the restart"}))
        .await;
    ann.send(json!({"type": "ping", "id": 2})).await;
    ann.recv_type("pong").await;

    let mut bob = Client::connect(&nodes[0].ws_url()).await;
    bob.last_seq = processed;
    bob.send(json!({"type": "resume", "token": token, "lastSeq": processed, "stream": stream}))
        .await;
    let resumed = bob.recv_type("resumed").await;
    assert_eq!(resumed["replay"], "incomplete", "{resumed}");
    assert_eq!(
        resumed["stream"],
        stream.as_str(),
        "the stream survived in the seat"
    );
    let after = bob.recv_type("offer").await;
    assert_eq!(after["sdp"], "v=0 after the restart");
    // Above what the node had sent, not from 1 again. Ann's node may have
    // announced her again (`REASSERT` re-created her seat) after Bob's seat was
    // back, and that took a number Bob's node skipped, since he knew her.
    assert!(
        (sent + 1..=sent + 2).contains(&bob.last_seq),
        "numbered on from where the node was: {} after {sent}",
        bob.last_seq
    );
}
