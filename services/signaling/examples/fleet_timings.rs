//! Measures what a fleet's users feel, on loopback with real processes:
//! relay latency on one node (in-process bus), between two peers on one node of
//! a Redis fleet, and between peers on two nodes; how long a SIGKILLed node's
//! peers take to leave their rooms with the default liveness timers; and how long
//! a Redis restart keeps cross-node negotiation down.
//!
//! ```sh
//! cargo build --release -p vc-signaling
//! cargo run --release -p vc-signaling --example fleet_timings -- [messages] [rate per second]
//! ```
//! Needs `redis-server` on the PATH; FLEET_NODE_BIN picks another node binary.
//! Prints one table; nothing is asserted.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed expectation should stop the test with its message"
)]

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use vc_fleet::{Backing, Data, Logs, Node, NodeSpec, Redis};

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// A node with the rate limits out of the way, on `redis` or on its own bus.
fn node(bin: &str, id: &str, redis: Option<&Redis>) -> Node {
    let mut spec = NodeSpec::new(id, bin)
        .set("VC_LIMITS__MESSAGES_PER_SECOND", "100000")
        .set("VC_LIMITS__MESSAGE_BURST", "100000")
        .set("VC_TELEMETRY__LOG_LEVEL", "error");
    spec.logs = Logs::Discard;
    if let Some(redis) = redis {
        spec.env.extend(redis.node_env());
    }
    Node::start(spec).unwrap_or_else(|e| panic!("{e} (cargo build --release -p vc-signaling)"))
}

async fn join(port: u16, room: &str, name: &str) -> (Socket, String) {
    let url = format!("ws://127.0.0.1:{port}/ws");
    let (mut ws, _) = tokio_tungstenite::connect_async(&url)
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let join = json!({"type": "join", "room": room, "name": name});
    ws.send(Message::text(join.to_string())).await.ok();
    loop {
        let message = next(&mut ws).await;
        if message["type"] == "joined" {
            let peer = message["peer"].as_str().unwrap_or_default().to_owned();
            return (ws, peer);
        }
    }
}

async fn next(ws: &mut Socket) -> Value {
    loop {
        match tokio::time::timeout(Duration::from_secs(60), ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                return serde_json::from_str(&text).unwrap_or(Value::Null)
            }
            Ok(Some(Ok(_))) => continue,
            other => panic!("socket ended: {other:?}"),
        }
    }
}

/// Sends `count` app-data messages from `a` to `b` at `rate` per second and
/// returns the one-way latencies in microseconds (same clock: one machine).
async fn latencies(a: &mut Socket, b: &mut Socket, to: &str, count: usize, rate: f64) -> Vec<u64> {
    let gap = Duration::from_secs_f64(1.0 / rate);
    let start = tokio::time::Instant::now();
    let sender = async {
        for i in 0..count {
            tokio::time::sleep_until(start + gap * i as u32).await;
            let frame = json!({"type": "app-data", "to": to, "data": {"t": now_us()}});
            a.send(Message::text(frame.to_string())).await.ok();
        }
    };
    let receiver = async {
        let mut got = Vec::with_capacity(count);
        while got.len() < count {
            let message = next(b).await;
            if message["type"] == "app-data" {
                let sent = message["data"]["t"].as_u64().unwrap_or(0);
                got.push(now_us().saturating_sub(sent));
            }
        }
        got
    };
    let ((), got) = tokio::join!(sender, receiver);
    got
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).copied().unwrap_or(0) as f64 / 1000.0
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let count: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(5000);
    let rate: f64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(500.0);
    let bin =
        std::env::var("FLEET_NODE_BIN").unwrap_or_else(|_| "target/release/vc-signaling".into());

    println!("relay latency, {count} app-data messages at {rate}/s, milliseconds:");
    println!("{:<34} {:>8} {:>8} {:>8}", "path", "p50", "p99", "max");
    let single = node(&bin, "single", None);
    let single_port = single.port;
    let mut redis = Redis::start_with(Backing::Standalone, None, Logs::Discard)
        .unwrap_or_else(|e| panic!("{e}"));
    let n1 = node(&bin, "n1", Some(&redis));
    let mut n2 = node(&bin, "n2", Some(&redis));
    let (p1, p2) = (n1.port, n2.port);
    for (label, a_port, b_port) in [
        ("one node, in-process bus", single_port, single_port),
        ("one node of a Redis fleet", p1, p1),
        ("two nodes over Redis", p1, p2),
    ] {
        let room = format!("lat-{a_port}-{b_port}");
        let (mut a, _) = join(a_port, &room, "A").await;
        let (mut b, b_id) = join(b_port, &room, "B").await;
        next(&mut a).await; // peer-joined
        let mut got = latencies(&mut a, &mut b, &b_id, count, rate).await;
        got.sort_unstable();
        println!(
            "{label:<34} {:>8.3} {:>8.3} {:>8.3}",
            percentile(&got, 0.5),
            percentile(&got, 0.99),
            percentile(&got, 1.0)
        );
    }
    drop(single);

    // A node killed without a goodbye, default timers (node_ttl 10 s, heartbeat 3 s).
    let (mut watcher, _) = join(p1, "crash", "Watcher").await;
    let (_victim, _) = join(p2, "crash", "Victim").await;
    next(&mut watcher).await; // peer-joined
    let killed = Instant::now();
    n2.kill();
    loop {
        let message = next(&mut watcher).await;
        if message["type"] == "peer-left" {
            println!(
                "\nSIGKILLed node's peer left its room after {:.2} s (reason {})",
                killed.elapsed().as_secs_f64(),
                message["reason"]
            );
            break;
        }
    }

    // Redis killed and restarted at once: how long until a relay across nodes
    // succeeds again.
    let n3 = node(&bin, "n3", Some(&redis));
    let p3 = n3.port;
    let (mut a, _) = join(p1, "outage", "A").await;
    let (mut b, b_id) = join(p3, "outage", "B").await;
    next(&mut a).await;
    let down = Instant::now();
    redis.restart(Data::Empty).unwrap_or_else(|e| panic!("{e}"));
    let restarted = down.elapsed();
    let recovered = loop {
        let frame = json!({"type": "app-data", "to": b_id, "data": "probe"});
        a.send(Message::text(frame.to_string())).await.ok();
        let got = tokio::time::timeout(Duration::from_millis(100), async {
            loop {
                let message = next(&mut b).await;
                if message["type"] == "app-data" {
                    return;
                }
            }
        })
        .await;
        if got.is_ok() {
            break down.elapsed();
        }
        while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(1), a.next()).await {}
    };
    println!(
        "Redis restart: cross-node relay back {:.2} s after the kill (Redis itself was back after {:.2} s)",
        recovered.as_secs_f64(),
        restarted.as_secs_f64()
    );
}
