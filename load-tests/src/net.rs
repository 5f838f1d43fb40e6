//! Connections: loopback-only targets, many source addresses, and one task per
//! socket that answers pings and hands parsed node messages to the scenario.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use vc_protocol::{ClientMessage, ServerMessage};

use crate::stats::Recorder;

/// Which wire protocol the target speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// The node's protocol: one JSON object per WebSocket text frame at `/ws`.
    Plain,
    /// The Socket.IO baseline: Engine.IO v4 over WebSocket at `/socket.io/`, the
    /// same JSON objects carried as the payload of a `msg` event.
    Socketio,
}

/// One node (or load balancer) to drive, resolved to a loopback address.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    pub addr: SocketAddr,
    host: String,
    path: String,
}

impl Target {
    /// Parses `ws://host:port/path`, refusing anything that is not loopback.
    pub fn parse(url: &str) -> anyhow::Result<Target> {
        let rest = url
            .strip_prefix("ws://")
            .or_else(|| url.strip_prefix("http://"))
            .with_context(|| format!("{url}: only ws:// URLs are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/ws"),
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, p) = v6.split_once(']').context("unterminated [ in URL")?;
            (h, p.strip_prefix(':').unwrap_or("80"))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, p),
                None => (authority, "80"),
            }
        };
        let port: u16 = port
            .parse()
            .with_context(|| format!("{url}: bad port {port:?}"))?;
        let ip: IpAddr = if host.eq_ignore_ascii_case("localhost") {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            host.parse()
                .with_context(|| format!("{url}: the host must be a loopback IP or localhost"))?
        };
        if !ip.is_loopback() {
            bail!("{url}: the load generator only targets loopback addresses (127.0.0.0/8, ::1)");
        }
        Ok(Target {
            url: url.to_owned(),
            addr: SocketAddr::new(ip, port),
            host: authority.to_owned(),
            path: path.to_owned(),
        })
    }

    fn request_url(&self, mode: Mode) -> String {
        match mode {
            Mode::Plain => format!("ws://{}{}", self.host, self.path),
            Mode::Socketio => format!("ws://{}/socket.io/?EIO=4&transport=websocket", self.host),
        }
    }
}

/// Parses every URL; fails on the first one that is not loopback.
pub fn parse_targets(urls: &[String]) -> anyhow::Result<Vec<Target>> {
    if urls.is_empty() {
        bail!("give at least one --url");
    }
    urls.iter().map(|u| Target::parse(u)).collect()
}

/// Source addresses in 127.0.0.0/8 handed out in turn, so that each one needs
/// only its share of the ~28k ephemeral ports.
#[derive(Debug)]
pub struct Sources {
    addrs: Vec<Ipv4Addr>,
    next: AtomicUsize,
}

impl Sources {
    /// `count` addresses from 127.0.1.1 up; zero binds nothing (the kernel picks).
    pub fn new(count: usize) -> Self {
        let addrs = (0..count)
            .map(|i| Ipv4Addr::new(127, 0, 1 + (i / 250) as u8, 1 + (i % 250) as u8))
            .collect();
        Self {
            addrs,
            next: AtomicUsize::new(0),
        }
    }

    /// Enough addresses for `connections`, at 20k per address, at least `min`.
    pub fn for_connections(connections: usize, min: usize) -> Self {
        Self::new(connections.div_ceil(20_000).max(min).min(250 * 200))
    }

    pub fn next(&self) -> Option<Ipv4Addr> {
        if self.addrs.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        Some(self.addrs[i % self.addrs.len()])
    }

    pub fn len(&self) -> usize {
        self.addrs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }
}

/// Raises this process's open-file limit to at least `wanted`, raising the hard
/// limit too when allowed (root). Returns the soft limit now in force.
pub fn raise_fd_limit(wanted: u64) -> anyhow::Result<u64> {
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
    if soft >= wanted {
        return Ok(soft);
    }
    if hard < wanted && rlimit::setrlimit(rlimit::Resource::NOFILE, wanted, wanted).is_ok() {
        return Ok(wanted);
    }
    Ok(rlimit::increase_nofile_limit(wanted)?)
}

/// What the scenario asks of a socket's task.
#[derive(Debug)]
pub enum Command {
    Text(String),
    Binary(Vec<u8>),
    /// Send a close frame with this code and wait for the node's.
    Close(u16),
    /// Drop the TCP connection without a close frame (a lost network).
    Abort,
}

/// What the socket's task hands to the scenario.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "moved once per frame; a box would add an allocation to every message the generator reads"
)]
pub enum Incoming {
    Message(ServerMessage, Instant),
    /// The socket ended; the close code if the node sent one.
    Closed(Option<u16>),
}

/// The sending side of a socket: cheap to clone, usable from any task.
#[derive(Debug, Clone)]
pub struct Tx {
    commands: mpsc::UnboundedSender<Command>,
    mode: Mode,
}

impl Tx {
    /// Encodes a message for the target's protocol.
    pub fn encode(mode: Mode, json: &str) -> String {
        match mode {
            Mode::Plain => json.to_owned(),
            Mode::Socketio => format!("42[\"msg\",{json}]"),
        }
    }

    #[allow(
        clippy::expect_used,
        reason = "ClientMessage has only string, number and JSON-value fields, which always serialize"
    )]
    pub fn send(&self, message: &ClientMessage) -> bool {
        let json = serde_json::to_string(message).expect("client messages serialize");
        self.send_json(&json)
    }

    /// Sends a JSON text as it is (wrapped for Socket.IO).
    pub fn send_json(&self, json: &str) -> bool {
        self.raw(Command::Text(Self::encode(self.mode, json)))
    }

    pub fn raw(&self, command: Command) -> bool {
        self.commands.send(command).is_ok()
    }
}

/// A connected socket: its sender and its inbox.
#[derive(Debug)]
pub struct Client {
    pub tx: Tx,
    pub rx: mpsc::UnboundedReceiver<Incoming>,
    /// The `node` field of the `welcome` frame.
    pub node: String,
}

impl Client {
    /// Waits for the next message, or `None` when the socket ended or `timeout` passed.
    pub async fn next(&mut self, timeout: Duration) -> Option<(ServerMessage, Instant)> {
        match tokio::time::timeout(timeout, self.rx.recv()).await {
            Ok(Some(Incoming::Message(m, at))) => Some((m, at)),
            _ => None,
        }
    }

    /// Waits for the first message `pick` accepts, skipping others; fails on
    /// timeout, on a closed socket, or on an `error` when `fail_on_error`.
    pub async fn expect<T>(
        &mut self,
        timeout: Duration,
        what: &str,
        mut pick: impl FnMut(&ServerMessage) -> Option<T>,
    ) -> anyhow::Result<(T, Instant)> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let incoming = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .map_err(|_| anyhow::anyhow!("timed out waiting for {what}"))?;
            match incoming {
                Some(Incoming::Message(message, at)) => {
                    if let Some(found) = pick(&message) {
                        return Ok((found, at));
                    }
                    if let ServerMessage::Error { code, message, .. } = &message {
                        bail!("error {code} while waiting for {what}: {message}");
                    }
                }
                Some(Incoming::Closed(code)) => {
                    bail!("socket closed ({code:?}) while waiting for {what}")
                }
                None => bail!("socket task ended while waiting for {what}"),
            }
        }
    }

    /// Closes with `code` (1000: a closed tab), not waiting for the end.
    pub fn close(&self, code: u16) {
        self.tx.raw(Command::Close(code));
    }
}

type Ws = WebSocketStream<TcpStream>;

/// Opens a socket to `target` from `source`, runs its task, and waits for the
/// node's `welcome`.
pub async fn connect(
    target: &Target,
    source: Option<Ipv4Addr>,
    mode: Mode,
    recorder: Arc<Recorder>,
    timeout: Duration,
) -> anyhow::Result<Client> {
    let opening = async {
        let socket = if target.addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        if let (Some(ip), true) = (source, target.addr.is_ipv4()) {
            socket
                .bind(SocketAddr::new(IpAddr::V4(ip), 0))
                .with_context(|| format!("binding to {ip}"))?;
        }
        let stream = socket.connect(target.addr).await.context("tcp connect")?;
        stream.set_nodelay(true)?;
        let (ws, _) = tokio_tungstenite::client_async(target.request_url(mode), stream)
            .await
            .context("websocket upgrade")?;
        anyhow::Ok(ws)
    };
    let mut ws = tokio::time::timeout(timeout, opening)
        .await
        .map_err(|_| anyhow::anyhow!("connect timed out"))??;
    if mode == Mode::Socketio {
        engine_io_open(&mut ws, timeout).await?;
    }
    let (commands, commands_rx) = mpsc::unbounded_channel();
    let (inbox_tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(pump(ws, mode, commands_rx, inbox_tx, recorder));
    let mut client = Client {
        tx: Tx { commands, mode },
        rx,
        node: String::new(),
    };
    let (node, _) = client
        .expect(timeout, "welcome", |m| match m {
            ServerMessage::Welcome { node, .. } => Some(node.clone()),
            _ => None,
        })
        .await?;
    client.node = node;
    Ok(client)
}

/// Engine.IO v4: the server's open packet (`0{...}`), then the client's namespace
/// connect (`40`) and the server's acknowledgement (`40{...}`).
async fn engine_io_open(ws: &mut Ws, timeout: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut opened = false;
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next())
            .await
            .context("socket.io handshake timed out")?
            .context("socket closed during the socket.io handshake")??;
        let Message::Text(text) = frame else { continue };
        if !opened && text.starts_with('0') {
            opened = true;
            ws.send(Message::text("40")).await?;
        } else if text.starts_with("40") {
            return Ok(());
        } else if text.starts_with("44") {
            bail!("socket.io refused the namespace: {text}");
        }
    }
}

/// Decodes one text frame into a node message, answering Engine.IO pings.
fn decode(mode: Mode, text: &str) -> Decoded {
    match mode {
        Mode::Plain => match serde_json::from_str::<ServerMessage>(text) {
            Ok(m) => Decoded::Message(m),
            Err(_) => Decoded::Garbage,
        },
        Mode::Socketio => {
            if text == "2" {
                return Decoded::EnginePing;
            }
            let Some(payload) = text.strip_prefix("42") else {
                return Decoded::Ignore;
            };
            match serde_json::from_str::<(String, ServerMessage)>(payload) {
                Ok((_, m)) => Decoded::Message(m),
                Err(_) => Decoded::Garbage,
            }
        }
    }
}

#[allow(
    clippy::large_enum_variant,
    reason = "moved once per frame; a box would add an allocation to every message the generator reads"
)]
enum Decoded {
    Message(ServerMessage),
    EnginePing,
    Ignore,
    Garbage,
}

async fn pump(
    mut ws: Ws,
    mode: Mode,
    mut commands: mpsc::UnboundedReceiver<Command>,
    inbox: mpsc::UnboundedSender<Incoming>,
    recorder: Arc<Recorder>,
) {
    let mut close_code = None;
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                Some(Command::Text(text)) => {
                    if ws.send(Message::text(text)).await.is_err() {
                        break;
                    }
                }
                Some(Command::Binary(bytes)) => {
                    if ws.send(Message::binary(bytes)).await.is_err() {
                        break;
                    }
                }
                Some(Command::Close(code)) => {
                    let frame = CloseFrame { code: CloseCode::from(code), reason: "".into() };
                    ws.close(Some(frame)).await.ok();
                    // Read until the node's close frame ends the stream.
                    let drain = async {
                        while let Some(Ok(frame)) = ws.next().await {
                            if let Message::Close(Some(f)) = frame {
                                close_code = Some(u16::from(f.code));
                            }
                        }
                    };
                    tokio::time::timeout(Duration::from_secs(5), drain).await.ok();
                    break;
                }
                // Dropping the stream sends a FIN without a close frame.
                Some(Command::Abort) | None => return,
            },
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    let at = Instant::now();
                    match decode(mode, &text) {
                        Decoded::Message(message) => {
                            recorder.frame_received();
                            if let ServerMessage::Error { code, .. } = &message {
                                recorder.error(code.as_str());
                            }
                            if inbox.send(Incoming::Message(message, at)).is_err() {
                                // Nobody listens any more: keep answering pings only.
                            }
                        }
                        Decoded::EnginePing => {
                            if ws.send(Message::text("3")).await.is_err() {
                                break;
                            }
                        }
                        Decoded::Ignore => {}
                        Decoded::Garbage => recorder.error("undecodable-frame"),
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    close_code = frame.map(|f| u16::from(f.code));
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            },
        }
    }
    inbox.send(Incoming::Closed(close_code)).ok();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_must_be_loopback() {
        assert!(Target::parse("ws://127.0.0.1:8080/ws").is_ok());
        assert!(Target::parse("ws://127.9.8.7:1/ws").is_ok());
        assert!(Target::parse("ws://localhost:8080/ws").is_ok());
        assert!(Target::parse("ws://[::1]:8080/ws").is_ok());
        assert!(Target::parse("ws://10.0.0.1:8080/ws").is_err());
        assert!(Target::parse("ws://192.168.1.2:8080/ws").is_err());
        assert!(Target::parse("ws://example.org:8080/ws").is_err());
        assert!(Target::parse("wss://127.0.0.1:8080/ws").is_err());
        let t = Target::parse("ws://127.0.0.1:9000").expect("parses");
        assert_eq!(t.addr.port(), 9000);
        assert_eq!(t.request_url(Mode::Plain), "ws://127.0.0.1:9000/ws");
        assert_eq!(
            t.request_url(Mode::Socketio),
            "ws://127.0.0.1:9000/socket.io/?EIO=4&transport=websocket"
        );
    }

    #[test]
    fn sources_cycle_through_loopback_addresses() {
        let s = Sources::new(3);
        let got: Vec<_> = (0..4).map(|_| s.next().expect("some")).collect();
        assert_eq!(got[0], Ipv4Addr::new(127, 0, 1, 1));
        assert_eq!(got[2], Ipv4Addr::new(127, 0, 1, 3));
        assert_eq!(got[3], got[0]);
        assert!(got.iter().all(|ip| ip.is_loopback()));
        assert_eq!(Sources::for_connections(100_000, 1).len(), 5);
        assert_eq!(Sources::new(0).next(), None);
        assert_eq!(Sources::new(251).addrs[250], Ipv4Addr::new(127, 0, 2, 1));
    }

    #[test]
    fn socketio_frames_wrap_the_same_json() {
        assert_eq!(
            Tx::encode(Mode::Plain, r#"{"type":"leave"}"#),
            r#"{"type":"leave"}"#
        );
        assert_eq!(
            Tx::encode(Mode::Socketio, r#"{"type":"leave"}"#),
            r#"42["msg",{"type":"leave"}]"#
        );
        assert!(matches!(
            decode(Mode::Socketio, r#"42["msg",{"type":"left"}]"#),
            Decoded::Message(ServerMessage::Left { id: None })
        ));
        assert!(matches!(decode(Mode::Socketio, "2"), Decoded::EnginePing));
        assert!(matches!(decode(Mode::Plain, "nope"), Decoded::Garbage));
    }
}
