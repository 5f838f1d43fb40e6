//! A peer that uses the protocol as the web client library does
//! (web-client/public/lib/signaling-client.js), for the chaos test: it keeps its
//! resume token and stream, moves to another live node and resumes with
//! `lastSeq` when its socket is lost or its node drains, drops frames whose
//! `seq` it has processed already, puts `ack` on everything it sends, keeps what
//! the node refuses for now (`unavailable`, `draining`) and sends it again in
//! order per target, and writes down, in a [`Ledger`] the test reads at the end,
//! every message it sent and received and everything it was told.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rand::rngs::StdRng;
use rand::Rng;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A message refused for now is given up this long after it was first sent,
/// as the web client does (`maxAgeMs`).
pub const MAX_HELD_AGE: Duration = Duration::from_secs(30);
/// Without any frame for this long after a `ping`, the socket counts as dead.
const LIVENESS_TIMEOUT: Duration = Duration::from_secs(4);
/// How long a connect, a `welcome` or the reply to `join`/`resume` may take.
const STEP_LIMIT: Duration = Duration::from_secs(5);
/// How long a peer keeps trying to get back into its room before it gives up.
const RECONNECT_LIMIT: Duration = Duration::from_secs(60);
/// The first and the longest wait before a refused message is tried again.
const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// Held messages go out through a bucket of their own, this many at once and
/// this many a second after, so that a backlog from a long outage stays within
/// the node's message limit (default burst 200, 50 a second) on top of the
/// steady sending.
const FLUSH_BURST: f64 = 150.0;
const FLUSH_RATE: f64 = 30.0;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What happened to one message a peer meant to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// Not written to a socket yet (none was up), or refused and waiting.
    Waiting,
    /// Written, not yet known to be taken.
    InFlight,
    /// Taken by the node: a `pong` to a later `ping` came back on its socket.
    Confirmed,
    /// Written to a socket that ended before a `pong` said whether the node
    /// read it; not sent again (the web client does not either).
    InDoubt,
    /// Given up, and the sender told why (`expired`, `unknown-peer`, ...).
    GivenUp(String),
}

#[derive(Debug, Clone)]
pub struct Sent {
    /// When it was first meant to go out.
    pub at: Instant,
    /// Whether Redis was down at that moment.
    pub redis_down: bool,
    /// Refused for now at least once, and so sent again.
    pub refused: bool,
    pub fate: Fate,
}

#[derive(Debug, Clone, Copy)]
pub struct Receipt {
    pub n: u64,
    pub at: Instant,
}

/// What every peer did, for the verdict at the end.
#[derive(Debug)]
pub struct Ledger {
    /// `sent[from][to][n]`.
    pub sent: Vec<Vec<Vec<Sent>>>,
    /// `received[to][from]`, in the order processed.
    pub received: Vec<Vec<Vec<Receipt>>>,
    /// Ordered pairs (from, to) whose loss a client was told of, and how.
    pub told: BTreeMap<(usize, usize), String>,
    /// Frames a client dropped because their `seq` was processed already.
    pub dropped_by_seq: u64,
    /// Refusals for now, by code.
    pub refusals: BTreeMap<String, u64>,
    /// Messages sent again after a refusal.
    pub retries: u64,
    /// Resumes, by the `replay` of their `resumed` (`none` without one).
    pub resumes: BTreeMap<String, u64>,
    /// Resumes that failed and became a new join.
    pub rejoins: u64,
    /// Sockets lost, by how.
    pub links_lost: BTreeMap<String, u64>,
    /// What no client should ever see; each is a failure of the run.
    pub unexpected: Vec<String>,
    /// When something notable happened (a departure announced, a pair told),
    /// for the test to charge it to a disruption.
    pub events: Vec<(Instant, String)>,
}

impl Ledger {
    pub fn new(peers: usize) -> Ledger {
        Ledger {
            sent: vec![vec![Vec::new(); peers]; peers],
            received: vec![vec![Vec::new(); peers]; peers],
            told: BTreeMap::new(),
            dropped_by_seq: 0,
            refusals: BTreeMap::new(),
            retries: 0,
            resumes: BTreeMap::new(),
            rejoins: 0,
            links_lost: BTreeMap::new(),
            unexpected: Vec::new(),
            events: Vec::new(),
        }
    }

    fn tell(&mut self, pair: (usize, usize), why: &str) {
        if let std::collections::btree_map::Entry::Vacant(entry) = self.told.entry(pair) {
            entry.insert(why.to_owned());
            self.events
                .push((Instant::now(), format!("told {}→{}: {why}", pair.0, pair.1)));
        }
    }

    /// Messages received, over every pair.
    pub fn received_count(&self) -> usize {
        self.received.iter().flatten().map(Vec::len).sum()
    }

    /// Whether nothing is waiting or in flight any more and every message the
    /// node took has reached its receiver (or the pair was told).
    pub fn settled(&self) -> bool {
        for (from, row) in self.sent.iter().enumerate() {
            for (to, sent) in row.iter().enumerate() {
                if sent
                    .iter()
                    .any(|s| matches!(s.fate, Fate::Waiting | Fate::InFlight))
                {
                    return false;
                }
                if self.told.contains_key(&(from, to)) {
                    continue;
                }
                let received = &self.received[to][from];
                let got: std::collections::HashSet<u64> = received.iter().map(|r| r.n).collect();
                let missing = sent
                    .iter()
                    .enumerate()
                    .any(|(n, s)| s.fate == Fate::Confirmed && !got.contains(&(n as u64)));
                if missing {
                    return false;
                }
            }
        }
        true
    }
}

/// What the peers share: where the nodes are and which are up, each peer's ids
/// (a peer that had to join again has a new one), and the ledger.
#[derive(Debug)]
pub struct Shared {
    pub room: String,
    pub urls: Vec<String>,
    pub live: Vec<AtomicBool>,
    pub redis_down: AtomicBool,
    /// Whether the nodes sequence what they send (`joined` carried a `stream`).
    pub sequenced: AtomicBool,
    /// Every peer id each peer has had, the current one last.
    pub ids: Mutex<Vec<Vec<String>>>,
    pub ledger: Mutex<Ledger>,
}

impl Shared {
    pub fn new(room: &str, urls: Vec<String>, peers: usize) -> Shared {
        Shared {
            room: room.to_owned(),
            live: urls.iter().map(|_| AtomicBool::new(true)).collect(),
            urls,
            redis_down: AtomicBool::new(false),
            sequenced: AtomicBool::new(false),
            ids: Mutex::new(vec![Vec::new(); peers]),
            ledger: Mutex::new(Ledger::new(peers)),
        }
    }

    pub fn ledger(&self) -> MutexGuard<'_, Ledger> {
        lock(&self.ledger)
    }

    pub fn set_live(&self, node: usize, live: bool) {
        self.live[node].store(live, Ordering::SeqCst);
    }

    fn index_of(&self, peer_id: &str) -> Option<usize> {
        lock(&self.ids)
            .iter()
            .position(|ids| ids.iter().any(|id| id == peer_id))
    }

    fn current_id(&self, index: usize) -> Option<String> {
        lock(&self.ids)[index].last().cloned()
    }
}

/// What the test tells a peer to do.
#[derive(Debug)]
pub enum Command {
    /// Drop the TCP connection without a close frame, like a lost network,
    /// and resume on another node.
    DropSocket,
    /// Start sending to every other peer at a steady rate.
    StartSending(Duration),
    /// Stop making new messages (what waits still goes).
    StopSending,
    /// Leave the room and end.
    Finish,
}

/// A peer's state, as the test sees it between disruptions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// Connected and in the room.
    pub connected: bool,
    /// Nothing waiting, nothing in flight.
    pub idle: bool,
}

struct Link {
    gen: u64,
    node: usize,
    ws: Socket,
}

/// A message the peer sends to another peer: `app-data {"n": n}`.
#[derive(Debug, Clone)]
struct Outgoing {
    to: usize,
    n: u64,
    /// The request id of its last transmission (ids grow with each send).
    id: u64,
    /// Refused at least once.
    retried: bool,
}

pub struct Peer {
    index: usize,
    shared: Arc<Shared>,
    rng: StdRng,
    link: Option<Link>,
    gens: u64,
    token: String,
    stream: Option<String>,
    /// Highest `seq` processed.
    highest: u64,
    next_id: u64,
    next_n: Vec<u64>,
    /// Transmitted, not yet confirmed: by request id, with the link generation.
    in_flight: BTreeMap<u64, (u64, Outgoing)>,
    /// Pings outstanding: ping id -> link generation.
    pings: HashMap<u64, u64>,
    /// Refused for now, waiting to be tried again, in the order first sent.
    held: VecDeque<Outgoing>,
    /// Made while no socket was up, sent after the resume.
    outbox: VecDeque<Outgoing>,
    /// A held message sent alone, with the ping behind it.
    probe: Option<(u64, u64)>,
    retry_at: Option<Instant>,
    retry_attempt: u32,
    last_heard: Instant,
    sending: Option<Duration>,
    /// A `reconnect` came while a request was being answered.
    drain_asked: bool,
    flush_tokens: f64,
    flush_refilled: Instant,
    status: tokio::sync::watch::Sender<Status>,
}

/// A joined peer's handle: its commands and its status.
pub struct PeerHandle {
    pub commands: mpsc::UnboundedSender<Command>,
    pub status: tokio::sync::watch::Receiver<Status>,
    pub task: tokio::task::JoinHandle<()>,
}

impl Peer {
    /// Connects to node `node`, joins the shared room as peer `index`, and
    /// runs the peer in a task of its own.
    pub async fn spawn(
        shared: Arc<Shared>,
        index: usize,
        node: usize,
        rng: StdRng,
    ) -> anyhow::Result<PeerHandle> {
        let peers = lock(&shared.ids).len();
        let (status, status_rx) = tokio::sync::watch::channel(Status {
            connected: false,
            idle: true,
        });
        let mut peer = Peer {
            index,
            shared,
            rng,
            link: None,
            gens: 0,
            token: String::new(),
            stream: None,
            highest: 0,
            next_id: 1,
            next_n: vec![0; peers],
            in_flight: BTreeMap::new(),
            pings: HashMap::new(),
            held: VecDeque::new(),
            outbox: VecDeque::new(),
            probe: None,
            retry_at: None,
            retry_attempt: 0,
            last_heard: Instant::now(),
            sending: None,
            drain_asked: false,
            flush_tokens: FLUSH_BURST,
            flush_refilled: Instant::now(),
            status,
        };
        let mut link = peer.open(node).await?;
        peer.join(&mut link).await?;
        peer.link = Some(link);
        peer.report_status();
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(peer.run(commands_rx));
        Ok(PeerHandle {
            commands,
            status: status_rx,
            task,
        })
    }

    fn request_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn report_status(&self) {
        let status = Status {
            connected: self.link.is_some(),
            idle: self.in_flight.is_empty()
                && self.held.is_empty()
                && self.outbox.is_empty()
                && self.probe.is_none(),
        };
        self.status.send_if_modified(|s| {
            let changed = *s != status;
            *s = status;
            changed
        });
    }

    /// A new socket to `node`, past its `welcome`.
    async fn open(&mut self, node: usize) -> anyhow::Result<Link> {
        let url = &self.shared.urls[node];
        let (ws, _) = tokio::time::timeout(
            STEP_LIMIT,
            tokio_tungstenite::connect_async_with_config(url, None, true),
        )
        .await??;
        self.gens += 1;
        let mut link = Link {
            gen: self.gens,
            node,
            ws,
        };
        let welcome = next_json(&mut link.ws, STEP_LIMIT).await?;
        anyhow::ensure!(welcome["type"] == "welcome", "first frame: {welcome}");
        Ok(link)
    }

    /// Sends a request on `link` and reads up to its reply (one with its id);
    /// frames from the room that come first are processed on the way.
    async fn request(&mut self, link: &mut Link, mut message: Value) -> anyhow::Result<Value> {
        let id = self.request_id();
        message["id"] = json!(id);
        message["ack"] = json!(self.highest);
        link.ws.send(Message::text(message.to_string())).await?;
        let deadline = Instant::now() + STEP_LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let frame = next_json(&mut link.ws, left).await?;
            if frame["id"] == id {
                return Ok(frame);
            }
            if let Flow::Drain = self.on_frame(link.gen, frame) {
                self.drain_asked = true;
            }
        }
    }

    async fn join(&mut self, link: &mut Link) -> anyhow::Result<()> {
        let room = self.shared.room.clone();
        let name = format!("P{}", self.index);
        let joined = self
            .request(
                link,
                json!({"type": "join", "room": room, "name": name, "protocol": 1}),
            )
            .await?;
        anyhow::ensure!(joined["type"] == "joined", "join: {joined}");
        self.adopt(&joined);
        self.highest = 0;
        Ok(())
    }

    fn adopt(&mut self, reply: &Value) {
        if let Some(token) = reply["resumeToken"].as_str() {
            self.token = token.to_owned();
        }
        self.stream = reply["stream"].as_str().map(str::to_owned);
        if self.stream.is_some() {
            self.shared.sequenced.store(true, Ordering::SeqCst);
        }
        if let Some(peer) = reply["peer"].as_str() {
            let mut ids = lock(&self.shared.ids);
            let mine = &mut ids[self.index];
            if mine.last().map(String::as_str) != Some(peer) {
                mine.push(peer.to_owned());
            }
        }
    }

    /// A live node, other than `avoid` when there is one.
    fn pick_node(&mut self, avoid: Option<usize>) -> Option<usize> {
        let live: Vec<usize> = (0..self.shared.urls.len())
            .filter(|i| self.shared.live[*i].load(Ordering::SeqCst))
            .collect();
        let others: Vec<usize> = live.iter().copied().filter(|i| Some(*i) != avoid).collect();
        let from = if others.is_empty() { live } else { others };
        (!from.is_empty()).then(|| from[self.rng.random_range(0..from.len())])
    }

    /// Gets back into the room on another node: `resume` with `lastSeq`, or a
    /// new `join` when the seat is gone. Retries until it gets in.
    async fn resume_elsewhere(&mut self, avoid: Option<usize>) -> anyhow::Result<Link> {
        let deadline = Instant::now() + RECONNECT_LIMIT;
        let mut attempt = 0u32;
        loop {
            anyhow::ensure!(
                Instant::now() < deadline,
                "peer {} could not get back in within {RECONNECT_LIMIT:?}",
                self.index
            );
            if attempt > 0 {
                let wait = Duration::from_millis(100 * 2u64.pow(attempt.min(4)));
                tokio::time::sleep(wait).await;
            }
            attempt += 1;
            let Some(node) = self.pick_node(avoid) else {
                continue;
            };
            let Ok(mut link) = self.open(node).await else {
                continue;
            };
            let mut resume = json!({"type": "resume", "token": self.token, "protocol": 1});
            if let Some(stream) = &self.stream {
                resume["stream"] = json!(stream);
                resume["lastSeq"] = json!(self.highest);
            }
            let Ok(reply) = self.request(&mut link, resume).await else {
                continue;
            };
            match (reply["type"].as_str(), reply["code"].as_str()) {
                (Some("resumed"), _) => {
                    let replay = reply["replay"].as_str().unwrap_or("none").to_owned();
                    *self
                        .shared
                        .ledger()
                        .resumes
                        .entry(replay.clone())
                        .or_default() += 1;
                    if replay == "incomplete" {
                        self.told_all("replay incomplete", false, true);
                    }
                    self.adopt(&reply);
                    return Ok(link);
                }
                (_, Some("resume-failed")) => {
                    // The seat is gone: the page would join again, and knows.
                    self.shared.ledger().rejoins += 1;
                    self.told_all("resume failed: joined again", true, true);
                    if self.join(&mut link).await.is_ok() {
                        return Ok(link);
                    }
                }
                (_, Some("unavailable" | "draining")) => {}
                _ => {
                    let note = format!("peer {}: resume answered {reply}", self.index);
                    self.shared.ledger().unexpected.push(note);
                }
            }
        }
    }

    /// Marks this peer's pairs as told: what it sends (`outgoing`), what it
    /// receives (`incoming`).
    fn told_all(&self, why: &str, outgoing: bool, incoming: bool) {
        let mut ledger = self.shared.ledger();
        for other in 0..self.next_n.len() {
            if other == self.index {
                continue;
            }
            if outgoing {
                ledger.tell((self.index, other), why);
            }
            if incoming {
                ledger.tell((other, self.index), why);
            }
        }
    }

    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut check = tokio::time::interval(Duration::from_millis(500));
        loop {
            let retry_at = self.retry_at;
            let sending = self.sending.is_some();
            let wake = tokio::select! {
                frame = next_frame(&mut self.link) => Wake::Frame(frame),
                command = commands.recv() => Wake::Command(command),
                _ = tick.tick(), if sending => Wake::Tick,
                _ = sleep_until(retry_at) => Wake::Retry,
                _ = check.tick() => Wake::Check,
            };
            let outcome = match wake {
                Wake::Frame(frame) => self.on_socket(frame).await,
                Wake::Command(None | Some(Command::Finish)) => {
                    if let Some(mut link) = self.link.take() {
                        link.ws.close(None).await.ok();
                    }
                    return;
                }
                Wake::Command(Some(Command::DropSocket)) => {
                    if let Some(link) = self.link.take() {
                        self.lose(link, "dropped by the test")
                            .await
                            .map(|()| Flow::Go)
                    } else {
                        Ok(Flow::Go)
                    }
                }
                Wake::Command(Some(Command::StartSending(every))) => {
                    self.sending = Some(every);
                    tick = tokio::time::interval(every);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    Ok(Flow::Go)
                }
                Wake::Command(Some(Command::StopSending)) => {
                    self.sending = None;
                    Ok(Flow::Go)
                }
                Wake::Tick => self.send_round().await,
                Wake::Retry => {
                    self.retry_at = None;
                    self.redeliver().await
                }
                Wake::Check => self.check().await,
            };
            let outcome = match outcome {
                Ok(Flow::Drain) => self.move_on_drain().await,
                Ok(Flow::Go) if std::mem::take(&mut self.drain_asked) && self.link.is_some() => {
                    self.move_on_drain().await
                }
                other => other,
            };
            match outcome {
                Ok(Flow::Go | Flow::Drain) => {}
                Ok(Flow::Lost(why)) => {
                    if let Some(link) = self.link.take() {
                        if let Err(e) = self.lose(link, &why).await {
                            self.give_up_run(e);
                            return;
                        }
                    }
                }
                Err(e) => {
                    self.give_up_run(e);
                    return;
                }
            }
            self.report_status();
        }
    }

    fn give_up_run(&self, error: anyhow::Error) {
        let note = format!("peer {} stopped: {error:#}", self.index);
        self.shared.ledger().unexpected.push(note);
        self.told_all("the peer gave up", true, true);
    }

    /// The socket ended (or was dropped): what was in flight on it is in doubt,
    /// and the peer resumes on another node.
    async fn lose(&mut self, link: Link, why: &str) -> anyhow::Result<()> {
        *self
            .shared
            .ledger()
            .links_lost
            .entry(why.to_owned())
            .or_default() += 1;
        let node = link.node;
        self.forget_link(link.gen);
        drop(link);
        self.report_status();
        let link = self.resume_elsewhere(Some(node)).await?;
        self.link = Some(link);
        self.last_heard = Instant::now();
        self.flush_outbox().await
    }

    fn forget_link(&mut self, gen: u64) {
        let lost: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, (g, _))| *g == gen)
            .map(|(id, _)| *id)
            .collect();
        let mut ledger = self.shared.ledger();
        for id in lost {
            let Some((_, out)) = self.in_flight.remove(&id) else {
                continue;
            };
            if self.probe.is_some_and(|(probe, _)| probe == id) {
                // Refused once already: it goes again, as the web client's probe does.
                self.probe = None;
                hold_in_order(&mut self.held, out);
            } else {
                ledger.sent[self.index][out.to][out.n as usize].fate = Fate::InDoubt;
            }
        }
        self.pings.retain(|_, g| *g != gen);
        if self.probe.is_some() {
            self.probe = None;
        }
    }

    async fn flush_outbox(&mut self) -> anyhow::Result<()> {
        while let Some(out) = self.outbox.pop_front() {
            if self.held.iter().any(|h| h.to == out.to) {
                hold_in_order(&mut self.held, out);
            } else if let Flow::Lost(why) = self.transmit(out).await {
                return self.lost_while_sending(why).await;
            }
        }
        if let Flow::Lost(why) = self.ping().await {
            return self.lost_while_sending(why).await;
        }
        match self.redeliver().await? {
            Flow::Go | Flow::Drain => Ok(()),
            Flow::Lost(why) => self.lost_while_sending(why).await,
        }
    }

    async fn lost_while_sending(&mut self, why: String) -> anyhow::Result<()> {
        match self.link.take() {
            Some(link) => Box::pin(self.lose(link, &why)).await,
            None => Ok(()),
        }
    }

    /// One message to every other peer.
    async fn send_round(&mut self) -> anyhow::Result<Flow> {
        let peers = self.next_n.len();
        let redis_down = self.shared.redis_down.load(Ordering::SeqCst);
        let now = Instant::now();
        let me = self.index;
        for to in (0..peers).filter(|to| *to != me) {
            let n = self.next_n[to];
            self.next_n[to] += 1;
            self.shared.ledger().sent[self.index][to].push(Sent {
                at: now,
                redis_down,
                refused: false,
                fate: Fate::Waiting,
            });
            let out = Outgoing {
                to,
                n,
                id: 0,
                retried: false,
            };
            if self.held.iter().any(|h| h.to == to) {
                hold_in_order(&mut self.held, out);
            } else if self.link.is_none() {
                self.outbox.push_back(out);
            } else if let Flow::Lost(why) = self.transmit(out).await {
                return Ok(Flow::Lost(why));
            }
        }
        Ok(self.ping().await)
    }

    /// Writes one message on the current socket.
    async fn transmit(&mut self, mut out: Outgoing) -> Flow {
        let Some(to_id) = self.shared.current_id(out.to) else {
            self.give_up(&out, "no peer id");
            return Flow::Go;
        };
        out.id = self.request_id();
        let message = json!({
            "type": "app-data", "id": out.id, "to": to_id,
            "data": {"n": out.n}, "ack": self.highest,
        });
        let Some(link) = self.link.as_mut() else {
            self.outbox.push_back(out);
            return Flow::Go;
        };
        let gen = link.gen;
        let written = link.ws.send(Message::text(message.to_string())).await;
        self.shared.ledger().sent[self.index][out.to][out.n as usize].fate = Fate::InFlight;
        self.in_flight.insert(out.id, (gen, out));
        match written {
            Ok(()) => Flow::Go,
            Err(e) => Flow::Lost(format!("write failed: {e}")),
        }
    }

    async fn ping(&mut self) -> Flow {
        let id = self.request_id();
        let Some(link) = self.link.as_mut() else {
            return Flow::Go;
        };
        self.pings.insert(id, link.gen);
        let message = json!({"type": "ping", "id": id, "ack": self.highest});
        match link.ws.send(Message::text(message.to_string())).await {
            Ok(()) => Flow::Go,
            Err(e) => Flow::Lost(format!("write failed: {e}")),
        }
    }

    fn give_up(&mut self, out: &Outgoing, why: &str) {
        let mut ledger = self.shared.ledger();
        ledger.sent[self.index][out.to][out.n as usize].fate = Fate::GivenUp(why.to_owned());
        ledger.tell((self.index, out.to), &format!("sender told: {why}"));
    }

    /// Sends the oldest held message with a ping behind it; the rest follows
    /// that ping's pong.
    async fn redeliver(&mut self) -> anyhow::Result<Flow> {
        let now = Instant::now();
        let expired: Vec<Outgoing> = {
            let ledger = self.shared.ledger();
            let (old, young): (Vec<Outgoing>, Vec<Outgoing>) = self.held.drain(..).partition(|h| {
                now.duration_since(ledger.sent[self.index][h.to][h.n as usize].at) > MAX_HELD_AGE
            });
            self.held = young.into();
            old
        };
        for out in &expired {
            self.give_up(out, "expired");
        }
        if self.probe.is_some() || self.link.is_none() {
            return Ok(Flow::Go);
        }
        let Some(out) = self.held.pop_front() else {
            return Ok(Flow::Go);
        };
        self.shared.ledger().retries += 1;
        if let Flow::Lost(why) = self.transmit(out).await {
            return Ok(Flow::Lost(why));
        }
        let probe_id = self.next_id - 1;
        let flow = self.ping().await;
        self.probe = Some((probe_id, self.next_id - 1));
        Ok(flow)
    }

    fn schedule_retry(&mut self) {
        if self.retry_at.is_some() {
            return;
        }
        let wait = RETRY_FIRST
            .saturating_mul(2u32.saturating_pow(self.retry_attempt))
            .min(RETRY_MAX);
        self.retry_attempt += 1;
        self.retry_at = Some(Instant::now() + wait);
    }

    async fn check(&mut self) -> anyhow::Result<Flow> {
        if self.link.is_none() {
            return Ok(Flow::Go);
        }
        if !self.pings.is_empty() && self.last_heard.elapsed() > LIVENESS_TIMEOUT {
            return Ok(Flow::Lost("nothing heard after a ping".into()));
        }
        if self.probe.is_none()
            && self.retry_at.is_none()
            && self.retry_attempt == 0
            && !self.held.is_empty()
        {
            return Ok(self.flush_held().await);
        }
        // While not sending, a ping now and then confirms what is in flight.
        if self.sending.is_none() && (!self.in_flight.is_empty() || !self.held.is_empty()) {
            if self.held.is_empty() || self.probe.is_some() {
                return Ok(self.ping().await);
            }
            if self.retry_at.is_none() {
                self.schedule_retry();
            }
        }
        Ok(Flow::Go)
    }

    async fn on_socket(
        &mut self,
        frame: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ) -> anyhow::Result<Flow> {
        let gen = self.link.as_ref().map(|l| l.gen).unwrap_or_default();
        match frame {
            Some(Ok(Message::Text(text))) => {
                self.last_heard = Instant::now();
                match serde_json::from_str::<Value>(&text) {
                    Ok(value) => match self.on_frame(gen, value) {
                        Flow::Drain => self.move_on_drain().await,
                        flow => self.after_frame().await.map(|f| flow.and(f)),
                    },
                    Err(e) => {
                        let note = format!("peer {}: not JSON ({e}): {text}", self.index);
                        self.shared.ledger().unexpected.push(note);
                        Ok(Flow::Go)
                    }
                }
            }
            Some(Ok(Message::Close(frame))) => Ok(Flow::Lost(match frame {
                Some(f) => format!("closed by the node ({})", u16::from(f.code)),
                None => "closed by the node".into(),
            })),
            Some(Ok(_)) => {
                self.last_heard = Instant::now();
                Ok(Flow::Go)
            }
            Some(Err(_)) | None => Ok(Flow::Lost("socket ended".into())),
        }
    }

    /// What a frame asks to be sent: a confirmed probe lets the held messages go.
    async fn after_frame(&mut self) -> anyhow::Result<Flow> {
        if self.probe.is_none() && !self.held.is_empty() && self.retry_at.is_none() {
            if self.retry_attempt == 0 {
                return Ok(self.flush_held().await);
            }
            self.schedule_retry();
        }
        Ok(Flow::Go)
    }

    /// The probe got through: what is held follows, as fast as the flush
    /// bucket allows (the rest on the next checks), with a ping behind.
    async fn flush_held(&mut self) -> Flow {
        let now = Instant::now();
        let refill = now.duration_since(self.flush_refilled).as_secs_f64() * FLUSH_RATE;
        self.flush_tokens = (self.flush_tokens + refill).min(FLUSH_BURST);
        self.flush_refilled = now;
        let mut sent = false;
        while self.flush_tokens >= 1.0 {
            let Some(out) = self.held.pop_front() else {
                break;
            };
            self.flush_tokens -= 1.0;
            self.shared.ledger().retries += 1;
            sent = true;
            if let Flow::Lost(why) = self.transmit(out).await {
                return Flow::Lost(why);
            }
        }
        if sent {
            self.ping().await
        } else {
            Flow::Go
        }
    }

    /// The node drains: resume on another node first, then read what the old
    /// socket still brings until the node closes it, then close it with 4000.
    async fn move_on_drain(&mut self) -> anyhow::Result<Flow> {
        let Some(mut old) = self.link.take() else {
            return Ok(Flow::Go);
        };
        self.report_status();
        let new = self.resume_elsewhere(Some(old.node)).await?;
        let deadline = Instant::now() + Duration::from_secs(2);
        while let Ok(frame) = next_json(
            &mut old.ws,
            deadline.saturating_duration_since(Instant::now()),
        )
        .await
        {
            self.on_frame(old.gen, frame);
        }
        old.ws
            .close(Some(CloseFrame {
                code: CloseCode::from(4000),
                reason: "".into(),
            }))
            .await
            .ok();
        *self
            .shared
            .ledger()
            .links_lost
            .entry("moved off a draining node".into())
            .or_default() += 1;
        self.forget_link(old.gen);
        self.link = Some(new);
        self.last_heard = Instant::now();
        self.flush_outbox().await?;
        Ok(Flow::Go)
    }

    /// One frame from the node, on the socket of generation `gen`.
    fn on_frame(&mut self, gen: u64, frame: Value) -> Flow {
        if let Some(seq) = frame["seq"].as_u64() {
            if seq <= self.highest {
                self.shared.ledger().dropped_by_seq += 1;
                return Flow::Go;
            }
            self.highest = seq;
        }
        match frame["type"].as_str().unwrap_or_default() {
            "app-data" => {
                let from = frame["from"].as_str().unwrap_or_default();
                let n = frame["data"]["n"].as_u64();
                match (self.shared.index_of(from), n) {
                    (Some(from), Some(n)) => {
                        let at = Instant::now();
                        self.shared.ledger().received[self.index][from].push(Receipt { n, at });
                    }
                    _ => {
                        let note = format!("peer {}: app-data of nobody: {frame}", self.index);
                        self.shared.ledger().unexpected.push(note);
                    }
                }
            }
            "pong" => {
                if let Some(id) = frame["id"].as_u64() {
                    self.on_pong(gen, id);
                }
            }
            "error" => self.on_error(&frame),
            "peer-left" => {
                // Nobody leaves this room: every departure is one too many.
                let who = frame["peer"].as_str().unwrap_or_default();
                let reason = frame["reason"].as_str().unwrap_or_default();
                let who = self
                    .shared
                    .index_of(who)
                    .map_or(who.to_owned(), |i| i.to_string());
                let note = format!("peer {} told peer {who} left ({reason})", self.index);
                let mut ledger = self.shared.ledger();
                ledger.events.push((Instant::now(), note.clone()));
                ledger.unexpected.push(note);
            }
            "reconnect" => return Flow::Drain,
            "peer-joined" | "welcome" | "resumed" | "joined" => {}
            _ => {
                let note = format!("peer {}: unexpected frame {frame}", self.index);
                self.shared.ledger().unexpected.push(note);
            }
        }
        Flow::Go
    }

    fn on_pong(&mut self, gen: u64, id: u64) {
        if self.pings.remove(&id).is_none() {
            return;
        }
        let taken: Vec<u64> = self
            .in_flight
            .range(..id)
            .filter(|(_, (g, _))| *g == gen)
            .map(|(i, _)| *i)
            .collect();
        let mut ledger = self.shared.ledger();
        for i in taken {
            if let Some((_, out)) = self.in_flight.remove(&i) {
                ledger.sent[self.index][out.to][out.n as usize].fate = Fate::Confirmed;
            }
        }
        if self.probe.is_some_and(|(_, ping)| ping == id) {
            self.probe = None;
            self.retry_attempt = 0;
            self.retry_at = None;
        }
    }

    fn on_error(&mut self, frame: &Value) {
        let code = frame["code"].as_str().unwrap_or_default().to_owned();
        let Some(id) = frame["id"].as_u64() else {
            let note = format!("peer {}: error without an id: {frame}", self.index);
            self.shared.ledger().unexpected.push(note);
            return;
        };
        let Some((_, mut out)) = self.in_flight.remove(&id) else {
            if self.pings.remove(&id).is_none() {
                let note = format!("peer {}: error for nothing in flight: {frame}", self.index);
                self.shared.ledger().unexpected.push(note);
            }
            return;
        };
        match code.as_str() {
            "unavailable" | "draining" => {
                *self.shared.ledger().refusals.entry(code).or_default() += 1;
                {
                    let mut ledger = self.shared.ledger();
                    let sent = &mut ledger.sent[self.index][out.to][out.n as usize];
                    sent.fate = Fate::Waiting;
                    sent.refused = true;
                }
                if self.probe.is_some_and(|(probe, _)| probe == id) {
                    self.probe = None;
                }
                out.retried = true;
                hold_in_order(&mut self.held, out);
                self.schedule_retry();
            }
            _ => self.give_up(&out, &code),
        }
    }
}

#[derive(Debug)]
enum Wake {
    Frame(Option<Result<Message, tokio_tungstenite::tungstenite::Error>>),
    Command(Option<Command>),
    Tick,
    Retry,
    Check,
}

#[derive(Debug)]
enum Flow {
    Go,
    Lost(String),
    /// The node drains: move to another.
    Drain,
}

impl Flow {
    fn and(self, other: Flow) -> Flow {
        match self {
            Flow::Go => other,
            lost => lost,
        }
    }
}

/// Puts `out` among the held messages in the order first sent (by target and
/// number: numbers grow per target, and only the order per target matters).
fn hold_in_order(held: &mut VecDeque<Outgoing>, out: Outgoing) {
    let at = held
        .iter()
        .position(|h| h.to == out.to && h.n > out.n)
        .unwrap_or(held.len());
    held.insert(at, out);
}

async fn next_frame(
    link: &mut Option<Link>,
) -> Option<Result<Message, tokio_tungstenite::tungstenite::Error>> {
    match link {
        Some(link) => link.ws.next().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The next text frame as JSON, within `wait`.
async fn next_json(ws: &mut Socket, wait: Duration) -> anyhow::Result<Value> {
    let deadline = Instant::now() + wait;
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next()).await?;
        match frame {
            Some(Ok(Message::Text(text))) => return Ok(serde_json::from_str(&text)?),
            Some(Ok(Message::Close(_))) | None => anyhow::bail!("socket closed"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
        }
    }
}
