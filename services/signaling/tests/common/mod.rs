//! Shared test helpers: spawn a node on port 0, and a WebSocket client that speaks
//! the protocol and fails loudly (with what it got instead) when an expectation
//! is not met.
#![allow(dead_code)]

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use vc_signaling::config::Settings;
use vc_signaling::startup::{Application, ShutdownHandle};

pub mod fleet;
pub mod raw;
pub mod sequenced;

/// Longest wait for a message that should come.
pub const PATIENCE: Duration = Duration::from_secs(5);

pub struct TestNode {
    pub port: u16,
    /// The separate `/metrics` listener, when `server.metrics_address` is set.
    pub metrics_port: Option<u16>,
    pub shutdown: ShutdownHandle,
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl TestNode {
    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.port)
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

/// Settings for a test node: loopback, a free port, quick timers.
pub fn test_settings() -> Settings {
    let mut settings = Settings::default();
    settings.server.host = "127.0.0.1".into();
    settings.server.port = 0;
    settings.server.workers = 2;
    settings.server.shutdown_timeout = Duration::from_secs(2);
    settings.node.id = "test-node".into();
    settings.resume.window = Duration::from_millis(300);
    settings
}

pub async fn spawn_node(customize: impl FnOnce(&mut Settings)) -> TestNode {
    let mut settings = test_settings();
    customize(&mut settings);
    settings.validate().expect("test settings are valid");
    let app = Application::build(settings).await.expect("node builds");
    let port = app.port();
    let metrics_port = app.metrics_port();
    let shutdown = app.shutdown_handle();
    let task = tokio::spawn(app.run_until_stopped());
    TestNode {
        port,
        metrics_port,
        shutdown,
        task,
    }
}

pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub welcome: Value,
    pub peer: String,
    pub resume_token: String,
    /// The highest `seq` received on the seat's stream.
    pub last_seq: u64,
}

/// The frames a node numbers on the seat's stream: everything from the room.
/// What a node may send unnumbered around a Redis outage: relays it hands over
/// between its own seats, and call states it tells again after an empty Redis.
pub const UNNUMBERED_AFTER_OUTAGE: [&str; 5] =
    ["offer", "answer", "candidate", "app-data", "peer-state"];

pub const NUMBERED: [&str; 9] = [
    "offer",
    "answer",
    "candidate",
    "app-data",
    "peer-joined",
    "peer-left",
    "chat",
    "peer-state",
    "reaction",
];

impl Client {
    /// Connects and reads the `welcome` frame.
    pub async fn connect(url: &str) -> Client {
        // Nagle off, as browsers have it: a test's small frames must not wait
        // behind the node's delayed ACKs.
        let (ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
            .await
            .expect("websocket connects");
        let mut client = Client {
            ws,
            welcome: Value::Null,
            peer: String::new(),
            resume_token: String::new(),
            last_seq: 0,
        };
        client.welcome = client.recv_type("welcome").await;
        client
    }

    /// Connects over TLS (`wss://` URL) with the client configuration given,
    /// and reads the `welcome` frame.
    pub async fn connect_tls(url: &str, config: std::sync::Arc<rustls::ClientConfig>) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(
            url,
            None,
            true,
            Some(tokio_tungstenite::Connector::Rustls(config)),
        )
        .await
        .expect("websocket connects over TLS");
        let mut client = Client {
            ws,
            welcome: Value::Null,
            peer: String::new(),
            resume_token: String::new(),
            last_seq: 0,
        };
        client.welcome = client.recv_type("welcome").await;
        client
    }

    /// Connects, joins `room` as `name`, and returns the client and its `joined`.
    pub async fn joined(url: &str, room: &str, name: &str) -> (Client, Value) {
        let mut client = Client::connect(url).await;
        let joined = client.join(room, name).await;
        (client, joined)
    }

    pub async fn join(&mut self, room: &str, name: &str) -> Value {
        self.send(json!({"type": "join", "id": 1, "room": room, "name": name}))
            .await;
        let joined = self.recv_type("joined").await;
        self.adopt(&joined);
        joined
    }

    /// Remembers the peer id and resume token of a `joined` or `resumed`.
    pub fn adopt(&mut self, reply: &Value) {
        self.peer = reply["peer"].as_str().expect("peer id").to_owned();
        self.resume_token = reply["resumeToken"].as_str().expect("token").to_owned();
    }

    pub async fn send(&mut self, value: Value) {
        self.send_text(&value.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::text(text))
            .await
            .expect("send succeeds");
    }

    pub async fn send_raw(&mut self, message: Message) {
        self.ws.send(message).await.expect("send succeeds");
    }

    /// The next protocol message, or a panic naming what came instead.
    /// The next message. A frame from the room's stream must carry a `seq`
    /// higher than any before it on this socket, a reply none; the `seq` is
    /// taken off (kept in [`Client::last_seq`]), so that tests compare the rest.
    pub async fn recv(&mut self) -> Value {
        match self.next_event(PATIENCE).await {
            Some(Event::Message(v)) => self.unnumbered(v),
            other => panic!("expected a message, got {other:?}"),
        }
    }

    /// Checks and removes a message's `seq`.
    pub fn unnumbered(&mut self, mut message: Value) -> Value {
        let kind = message["type"].as_str().unwrap_or_default().to_owned();
        if kind == "joined" {
            self.last_seq = 0;
        }
        let seq = message.as_object_mut().and_then(|m| m.remove("seq"));
        // A relay handed over between two seats of one node while its Redis is
        // away carries no number, nor a call state told again after Redis came
        // back empty (docs/protocol.md).
        let handed_over = seq.is_none() && UNNUMBERED_AFTER_OUTAGE.contains(&kind.as_str());
        if NUMBERED.contains(&kind.as_str()) && !handed_over {
            let seq = seq
                .and_then(|s| s.as_u64())
                .unwrap_or_else(|| panic!("a {kind} without a seq: {message}"));
            assert!(
                seq > self.last_seq,
                "seq {seq} after {}: {message}",
                self.last_seq
            );
            self.last_seq = seq;
        } else {
            assert_eq!(seq, None, "a reply with a seq: {message}");
        }
        message
    }

    /// The next message, which must be of `kind`.
    pub async fn recv_type(&mut self, kind: &str) -> Value {
        let message = self.recv().await;
        assert_eq!(message["type"], kind, "unexpected message: {message}");
        message
    }

    /// The next message must be an error with `code`.
    pub async fn expect_error(&mut self, code: &str) -> Value {
        let error = self.recv_type("error").await;
        assert_eq!(error["code"], code, "unexpected error: {error}");
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "error without a message: {error}"
        );
        error
    }

    /// Nothing arrives for `quiet`.
    pub async fn expect_silence(&mut self, quiet: Duration) {
        if let Some(event) = self.next_event(quiet).await {
            panic!("expected silence, got {event:?}");
        }
    }

    /// The socket closes (after any frames still queued); returns the close frame.
    pub async fn expect_close(&mut self) -> Option<CloseFrame> {
        loop {
            match self.next_event(PATIENCE).await {
                Some(Event::Closed(frame)) => return frame,
                Some(Event::Message(_)) => continue,
                None => panic!("socket did not close"),
            }
        }
    }

    pub async fn expect_close_code(&mut self, code: u16) {
        let frame = self.expect_close().await;
        assert_eq!(
            frame.as_ref().map(|f| u16::from(f.code)),
            Some(code),
            "close frame: {frame:?}"
        );
    }

    /// Closes with a code and waits for the node's answer.
    pub async fn close(mut self, code: u16) {
        self.ws
            .close(Some(CloseFrame {
                code: CloseCode::from(code),
                reason: "".into(),
            }))
            .await
            .ok();
        while let Some(Ok(_)) = self.ws.next().await {}
    }

    /// Drops the TCP connection without a close frame, like a lost network.
    pub fn drop_connection(self) {
        drop(self.ws);
    }

    /// Whatever has arrived already, without waiting.
    pub async fn poll_now(&mut self) -> Option<Event> {
        self.next_event(Duration::from_millis(1)).await
    }

    pub async fn next_event(&mut self, wait: Duration) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()?;
            match frame {
                Some(Ok(Message::Text(text))) => {
                    let value: Value = serde_json::from_str(&text).expect("node sends JSON");
                    return Some(Event::Message(value));
                }
                Some(Ok(Message::Close(frame))) => return Some(Event::Closed(frame)),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Some(Event::Closed(None)),
            }
        }
    }
}

#[derive(Debug)]
pub enum Event {
    Message(Value),
    Closed(Option<CloseFrame>),
}

/// Member ids of a `joined`/`resumed` reply.
pub fn member_ids(reply: &Value) -> Vec<String> {
    reply["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["id"].as_str().expect("id").to_owned())
        .collect()
}

/// Each member's call state, by name, from a `joined` or `resumed`: the fields
/// that are there (all of them true; a false one is left out).
pub fn call_states(reply: &Value) -> Vec<(String, Value)> {
    reply["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| {
            let state: serde_json::Map<String, Value> = m
                .as_object()
                .expect("a member")
                .iter()
                .filter(|(k, _)| ["hand", "muted", "cameraOff", "sharing"].contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            (
                m["name"].as_str().expect("name").to_owned(),
                Value::Object(state),
            )
        })
        .collect()
}

/// A plain HTTP/1.1 GET over loopback: status code and body.
pub async fn http_get(port: u16, path: &str) -> (u16, String) {
    let (status, _, body) = http_get_with_headers(port, path).await;
    (status, body)
}

/// A plain HTTP/1.1 GET over loopback: status code, the header block in lower
/// case, and the body.
pub async fn http_get_with_headers(port: u16, path: &str) -> (u16, String, String) {
    http_get_sending(port, path, "").await
}

/// A GET with `Authorization: Bearer <token>`: status code and body.
pub async fn http_get_bearer(port: u16, path: &str, token: &str) -> (u16, String) {
    let (status, _, body) =
        http_get_sending(port, path, &format!("Authorization: Bearer {token}\r\n")).await;
    (status, body)
}

/// A GET with `extra` header lines (each ending in CRLF).
async fn http_get_sending(port: u16, path: &str, extra: &str) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connects");
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{extra}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("writes");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("reads");
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (status, head.to_ascii_lowercase(), body.to_owned())
}
