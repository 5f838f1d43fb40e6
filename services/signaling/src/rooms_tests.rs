//! The room core on its own: [`Rooms`] and the [`Router`] over the in-process
//! fakes of the bus and presence, with faults and gates forcing the interleavings
//! that matter. No Redis and no sockets: what a client would be sent is read from
//! its session's outbox and decoded.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use vc_protocol::{
    CallState, CallStateChange, ErrorCode, LeaveReason, Member, RelayKind, Replay, RequestId,
    ServerMessage, REACTIONS,
};

use super::{JoinRequest, Refusal, ResumeRequest, Rooms, Seat};
use crate::auth::Authenticator;
use crate::bus::fake::BusHub;
use crate::bus::memory::{MemoryHistory, MemoryStreams};
use crate::config::{AuthMode, RoomSettings, Settings};
use crate::envelope::Event;
use crate::faults::{FaultPlan, Op};
use crate::lifecycle::{Lifecycle, Phase};
use crate::metrics::Metrics;
use crate::outage_queue::Sender;
use crate::outbox::{outbox, Eviction, Next, Outbound, Receiver, SessionHandle};
use crate::presence::fake::FakePresence;
use crate::presence::memory::MemoryPresence;
use crate::presence::{MemberRecord, Presence};
use crate::router::{Router, RouterStats};
use crate::vocabulary::testing::{conn, node, room};
use crate::vocabulary::{ConnId, NodeId, PeerId};

const ROOM: &str = "standup";

/// Nodes sharing one bus and one presence store, as a fleet shares Redis.
struct Fleet {
    hub: Arc<BusHub>,
    store: Arc<MemoryPresence>,
    settings: Arc<Settings>,
}

/// One node: its room core, its router, the faults of its bus and presence, and
/// the lifecycle its seat timers stop with.
struct Node {
    id: NodeId,
    rooms: Arc<Rooms>,
    router: Arc<Router>,
    faults: Arc<FaultPlan>,
    lifecycle: Lifecycle,
}

impl Fleet {
    fn new() -> Self {
        Self::with(Settings::default())
    }

    fn with(settings: Settings) -> Self {
        let streams = Arc::new(MemoryStreams::new(&settings.replay, settings.resume.window));
        Self {
            hub: BusHub::new(Arc::clone(&streams)),
            store: Arc::new(MemoryPresence::with(
                Arc::new(MemoryHistory::new(0)),
                streams,
            )),
            settings: Arc::new(settings),
        }
    }

    fn node(&self, name: &str) -> Node {
        let id = node(name);
        let metrics = Arc::new(Metrics::new(name));
        let router = Arc::new(Router::new(&id, Arc::clone(&metrics)));
        let faults = FaultPlan::new();
        let bus = self
            .hub
            .attach(&id, Arc::clone(&router) as _, Arc::clone(&faults));
        let presence = FakePresence::new(Arc::clone(&self.store), Arc::clone(&faults));
        let lifecycle = Lifecycle::new();
        let rooms = Rooms::start(
            id.clone(),
            Arc::clone(&self.settings),
            Arc::clone(&router),
            Arc::new(bus),
            Arc::new(presence),
            metrics,
            &lifecycle,
        );
        Node {
            id,
            rooms,
            router,
            faults,
            lifecycle,
        }
    }

    /// The seat as presence has it now.
    async fn seat(&self, peer: &PeerId) -> Option<MemberRecord> {
        self.store
            .seat(&room(ROOM), peer)
            .await
            .expect("memory presence")
    }

    /// The peer ids presence has in the room, oldest first.
    async fn members(&self) -> Vec<PeerId> {
        self.members_of(ROOM).await
    }

    async fn members_of(&self, name: &str) -> Vec<PeerId> {
        let members = self
            .store
            .members(&room(name))
            .await
            .expect("memory presence");
        members.into_iter().map(|m| m.id).collect()
    }

    /// How many envelopes the bus took whose event matches.
    fn published(&self, matches: impl Fn(&Event) -> bool) -> usize {
        self.hub
            .published()
            .iter()
            .filter(|e| matches(&e.event))
            .count()
    }
}

impl Node {
    async fn join(&self, client: &Client, name: &str) -> Result<Seat, Refusal> {
        self.join_room(client, ROOM, name).await
    }

    async fn join_room(
        &self,
        client: &Client,
        name_of_room: &str,
        name: &str,
    ) -> Result<Seat, Refusal> {
        let request = JoinRequest {
            id: None,
            room: room(name_of_room),
            name,
            token: None,
        };
        self.rooms
            .join(request, &client.conn, client.handle.clone())
            .await
    }

    async fn join_with_token(&self, client: &Client, token: &str) -> Result<Seat, Refusal> {
        let request = JoinRequest {
            id: None,
            room: room(ROOM),
            name: "Guest",
            token: Some(token),
        };
        self.rooms
            .join(request, &client.conn, client.handle.clone())
            .await
    }

    /// Joins in a task of its own, for a join that a gate stops midway.
    fn spawn_join(&self, client: &Client, name: &str) -> JoinHandle<Result<Seat, Refusal>> {
        self.spawn_join_room(client, ROOM, name)
    }

    fn spawn_join_room(
        &self,
        client: &Client,
        name_of_room: &str,
        name: &str,
    ) -> JoinHandle<Result<Seat, Refusal>> {
        let rooms = Arc::clone(&self.rooms);
        let (conn, handle) = (client.conn.clone(), client.handle.clone());
        let (room, name) = (room(name_of_room), name.to_owned());
        tokio::spawn(async move {
            let request = JoinRequest {
                id: None,
                room,
                name: &name,
                token: None,
            };
            rooms.join(request, &conn, handle).await
        })
    }

    async fn resume(&self, client: &Client, token: &str) -> Result<Seat, Refusal> {
        self.resume_after(client, token, None).await
    }

    /// A resume naming the last `seq` the client processed, on the stream
    /// `joined` named.
    async fn resume_after(
        &self,
        client: &Client,
        token: &str,
        last: Option<(u64, &str)>,
    ) -> Result<Seat, Refusal> {
        let request = ResumeRequest {
            id: None,
            token,
            last_seq: last.map(|(seq, _)| seq),
            stream: last.map(|(_, stream)| stream),
        };
        self.rooms
            .resume(request, &client.conn, client.handle.clone())
            .await
    }

    fn spawn_resume(&self, client: &Client, token: &str) -> JoinHandle<Result<Seat, Refusal>> {
        let rooms = Arc::clone(&self.rooms);
        let (conn, handle, token) = (client.conn.clone(), client.handle.clone(), token.to_owned());
        tokio::spawn(async move {
            let request = ResumeRequest {
                id: None,
                token: &token,
                last_seq: None,
                stream: None,
            };
            rooms.resume(request, &conn, handle).await
        })
    }

    /// Relays an offer the way a session does: the finished frame, then the bus.
    async fn offer(&self, from: &Seat, to: &PeerId, sdp: &str) -> Result<(), Refusal> {
        let frame = ServerMessage::Offer {
            from: from.peer.to_string(),
            sdp: sdp.to_owned(),
        };
        self.rooms
            .relay(from, to.as_str(), RelayKind::Offer, frame.to_json(), sender)
            .await
    }

    fn stats(&self) -> RouterStats {
        self.router.stats()
    }

    /// Returns once the seat timers count `n` seats waiting, which is also how a
    /// test knows the timers have taken what it just asked of them.
    async fn timers_hold(&self, n: usize) {
        let mut waiting = self.rooms.seat_timers().waiting();
        let counted = tokio::time::timeout(Duration::from_secs(10), waiting.wait_for(|w| *w == n))
            .await
            .map(|seen| seen.map(|w| *w));
        assert!(
            matches!(counted, Ok(Ok(_))),
            "the seat timers never held {n} seats (now {})",
            *self.rooms.seat_timers().waiting().borrow()
        );
    }
}

/// One socket as the room core sees it: its outbox and its eviction switch.
struct Client {
    conn: ConnId,
    handle: SessionHandle,
    outbox: Receiver,
}

impl Client {
    fn new(name: &str) -> Self {
        let (handle, outbox) = outbox(64);
        Self {
            conn: conn(name),
            handle,
            outbox,
        }
    }

    /// The frames sent to this client since the last look, decoded.
    fn received(&mut self) -> Vec<ServerMessage> {
        let mut frames = Vec::new();
        while let Some(out) = self.outbox.try_recv() {
            let message = serde_json::from_str(&out.text)
                .unwrap_or_else(|e| panic!("not a server message ({e}): {}", out.text));
            frames.push(message);
        }
        frames
    }

    /// The frames since the last look, each as one line to compare.
    fn saw(&mut self) -> Vec<String> {
        self.received().iter().map(line).collect()
    }

    /// The resume token of the `joined` or `resumed` frame that must be the only
    /// thing this client was sent since the last look.
    fn token(&mut self) -> String {
        match self.received().as_slice() {
            [ServerMessage::Joined { seat, .. } | ServerMessage::Resumed { seat, .. }] => {
                seat.resume_token.clone()
            }
            other => panic!("expected one joined or resumed frame, got {other:?}"),
        }
    }

    fn evicted(&self) -> Option<Eviction> {
        self.handle.eviction()
    }
}

/// The next frame queued for a client, waiting for it; none once it is evicted.
async fn next_frame(outbox: &Receiver) -> Option<Outbound> {
    match outbox.next().await {
        Next::Frame(out) => Some(out),
        Next::Evicted(_) => None,
    }
}

/// The sender of a message whose refusals nobody reads.
fn sender() -> Sender {
    let (handle, _outbox) = outbox(1);
    Sender {
        handle,
        id: None,
        what: "test",
    }
}

fn ids(members: &[Member]) -> String {
    members
        .iter()
        .map(|m| m.id.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// One frame as a line: its type and what identifies it.
fn line(message: &ServerMessage) -> String {
    match message {
        ServerMessage::Joined { seat, .. } => format!("joined [{}]", ids(&seat.members)),
        ServerMessage::Resumed { seat, .. } => format!("resumed [{}]", ids(&seat.members)),
        ServerMessage::PeerJoined { peer } => format!("peer-joined {}", peer.id),
        ServerMessage::PeerLeft { peer, reason } => format!("peer-left {peer} {reason:?}"),
        ServerMessage::Offer { from, sdp } => format!("offer from {from}: {sdp}"),
        other => other.type_name().to_owned(),
    }
}

fn joined(members: &[&Seat]) -> String {
    let ids: Vec<&str> = members.iter().map(|s| s.peer.as_str()).collect();
    format!("joined [{}]", ids.join(","))
}

fn resumed(members: &[&Seat]) -> String {
    let ids: Vec<&str> = members.iter().map(|s| s.peer.as_str()).collect();
    format!("resumed [{}]", ids.join(","))
}

fn peer_joined(seat: &Seat) -> String {
    format!("peer-joined {}", seat.peer)
}

fn peer_left(seat: &Seat, reason: LeaveReason) -> String {
    format!("peer-left {} {reason:?}", seat.peer)
}

fn offer(from: &Seat, sdp: &str) -> String {
    format!("offer from {}: {sdp}", from.peer)
}

fn is_peer_joined(seat: &Seat) -> impl Fn(&Event) -> bool + '_ {
    move |e| matches!(e, Event::PeerJoined { member } if member.id == seat.peer.as_str())
}

fn is_peer_left(seat: &Seat) -> impl Fn(&Event) -> bool + '_ {
    move |e| matches!(e, Event::PeerLeft { peer, .. } if *peer == seat.peer)
}

fn code(result: Result<Seat, Refusal>) -> ErrorCode {
    match result {
        Ok(seat) => panic!("expected a refusal, got the seat {seat:?}"),
        Err(refusal) => refusal.code,
    }
}

async fn finished<T>(task: JoinHandle<T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the task finishes once its gates are open")
        .expect("the task does not panic")
}

/// The same token with another secret.
fn forged(token: &str) -> String {
    let (seat, _secret) = token.rsplit_once('.').expect("room.peer.secret");
    format!("{seat}.{}", "0".repeat(32))
}

// Joining.

#[tokio::test]
async fn a_join_subscribes_before_it_takes_the_seat_and_is_announced_once() {
    let fleet = Fleet::new();
    let n1 = fleet.node("n1");
    let mut ann = Client::new("a1");
    let a = n1.join(&ann, "Ann").await.expect("ann joins");
    assert_eq!(ann.saw(), [joined(&[])]);

    let mut bob = Client::new("b1");
    let gate = n1.faults.hold_next(Op::PresenceJoin);
    let joining = n1.spawn_join(&bob, "Bob");
    gate.reached().await;
    // Presence has not given out the seat yet, and the node already listens.
    assert_eq!(fleet.hub.subscriptions("n1", ROOM), 2);
    assert_eq!(fleet.members().await, [a.peer.as_str()]);
    gate.open();
    let b = finished(joining).await.expect("bob joins");

    assert_eq!(
        n1.faults.calls(),
        [
            Op::BusSubscribe,
            Op::PresenceJoin,
            Op::BusPublish,
            Op::BusSubscribe,
            Op::PresenceJoin,
            Op::BusPublish
        ]
    );
    assert_eq!(bob.saw(), [joined(&[&a])]);
    assert_eq!(ann.saw(), [peer_joined(&b)]);
    assert_eq!(fleet.published(is_peer_joined(&b)), 1);
    assert_eq!(fleet.members().await, [a.peer.as_str(), b.peer.as_str()]);
    assert!(n1.router.is_member(&room(ROOM), &b.peer));
}

#[tokio::test]
async fn a_failed_subscribe_refuses_the_join_and_leaves_nothing_behind() {
    let fleet = Fleet::new();
    let n1 = fleet.node("n1");
    let mut ann = Client::new("a1");
    n1.faults.fail_next(Op::BusSubscribe);
    assert_eq!(code(n1.join(&ann, "Ann").await), ErrorCode::Unavailable);

    assert_eq!(n1.faults.calls(), [Op::BusSubscribe]);
    assert!(ann.saw().is_empty());
    assert_eq!(n1.stats(), RouterStats::default());
    assert_eq!(fleet.hub.subscriptions("n1", ROOM), 0);
    assert!(fleet.members().await.is_empty());
    assert!(fleet.hub.published().is_empty());
    // The fault was for one call: the same client gets in on its next try.
    n1.join(&ann, "Ann").await.expect("ann joins");
    assert_eq!(ann.saw(), [joined(&[])]);
}

#[tokio::test]
async fn a_failed_presence_join_gives_back_the_reservation_and_the_subscription() {
    let fleet = Fleet::new();
    let n1 = fleet.node("n1");
    let mut ann = Client::new("a1");
    let a = n1.join(&ann, "Ann").await.expect("ann joins");
    ann.saw();
    let mut bob = Client::new("b1");
    n1.faults.fail_next(Op::PresenceJoin);
    assert_eq!(code(n1.join(&bob, "Bob").await), ErrorCode::Unavailable);

    assert!(bob.saw().is_empty());
    assert!(ann.saw().is_empty());
    assert_eq!(n1.stats(), RouterStats { rooms: 1, seats: 1 });
    assert_eq!(fleet.hub.subscriptions("n1", ROOM), 1);
    assert_eq!(fleet.hub.unbalanced_unsubscribes(), 0);
    assert_eq!(fleet.members().await, [a.peer.as_str()]);
    let b = n1.join(&bob, "Bob").await.expect("bob joins");
    assert_eq!(bob.saw(), [joined(&[&a])]);
    assert_eq!(ann.saw(), [peer_joined(&b)]);
}

#[tokio::test]
async fn a_presence_join_that_ran_before_failing_leaves_no_seat() {
    // A command that timed out after Redis had run it: the seat was taken.
    let fleet = Fleet::new();
    let n1 = fleet.node("n1");
    let mut ann = Client::new("a1");
    let a = n1.join(&ann, "Ann").await.expect("ann joins");
    ann.saw();
    let mut bob = Client::new("b1");
    n1.faults.fail_next_after_running(Op::PresenceJoin);
    assert_eq!(code(n1.join(&bob, "Bob").await), ErrorCode::Unavailable);

    assert_eq!(fleet.members().await, [a.peer.as_str()]);
    assert!(bob.saw().is_empty());
    // Ann never heard of Bob, so the departure that undoes his seat says nothing to her.
    assert!(ann.saw().is_empty());
    assert_eq!(n1.stats(), RouterStats { rooms: 1, seats: 1 });
    assert_eq!(fleet.hub.subscriptions("n1", ROOM), 1);
}

/// Lets the spawned tasks run until the node holds `seats` local seats: a join
/// has reserved its seat, so it is at its subscribe or past it.
async fn until_seats(node: &Node, seats: usize) {
    while node.stats().seats < seats {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_subscribe_stuck_in_one_room_holds_up_joins_into_that_room_only() {
    let fleet = Fleet::new();
    let n1 = fleet.node("n1");
    let (dan, eve, mut ann) = (Client::new("d1"), Client::new("e1"), Client::new("a1"));
    let gate = n1.faults.hold_next(Op::BusSubscribe);
    let dan_joins = n1.spawn_join_room(&dan, "retro", "Dan");
    gate.reached().await;
    let eve_joins = n1.spawn_join_room(&eve, "retro", "Eve");
    until_seats(&n1, 2).await;

    // Another room is not held up by retro's round trip.
    let a = tokio::time::timeout(Duration::from_secs(10), n1.join(&ann, "Ann"))
        .await
        .expect("a join into another room does not wait for retro's subscribe")
        .expect("ann joins");
    assert_eq!(ann.saw(), [joined(&[])]);
    // Retro's second join waits for the first one's subscribe: it has not
    // subscribed, let alone taken a seat.
    assert_eq!(n1.faults.count(Op::BusSubscribe), 2);
    assert!(fleet.members_of("retro").await.is_empty());
    assert_eq!(fleet.members().await, [a.peer.as_str()]);

    gate.open();
    let d = finished(dan_joins).await.expect("dan joins");
    let e = finished(eve_joins).await.expect("eve joins");
    assert_eq!(
        fleet.members_of("retro").await,
        [d.peer.as_str(), e.peer.as_str()]
    );
    assert_eq!(fleet.hub.subscriptions("n1", "retro"), 2);
    assert_eq!(fleet.hub.subscriptions("n1", ROOM), 1);
}

#[tokio::test]
async fn a_join_racing_the_last_leave_of_its_room_waits_for_the_unsubscribe_and_stays_subscribed() {
    let fleet = Fleet::new();
    let n1 = fleet.node("n1");
    let (ann, mut bob) = (Client::new("a1"), Client::new("b1"));
    let a = n1.join(&ann, "Ann").await.expect("ann joins");
    let gate = n1.faults.hold_next(Op::BusUnsubscribe);
    let leaving = {
        let (rooms, a) = (Arc::clone(&n1.rooms), a.clone());
        tokio::spawn(async move { rooms.leave(&a, LeaveReason::Left).await })
    };
    gate.reached().await;
    let joining = n1.spawn_join(&bob, "Bob");
    until_seats(&n1, 1).await;
    // The join waits for the room's unsubscribe to finish before it subscribes.
    assert_eq!(n1.faults.count(Op::BusSubscribe), 1);
    assert!(fleet.members().await.is_empty());

    gate.open();
    finished(leaving).await;
    let b = finished(joining).await.expect("bob joins");
    assert_eq!(bob.saw(), [joined(&[])]);
    assert_eq!(fleet.members().await, [b.peer.as_str()]);
    assert_eq!(fleet.hub.subscriptions("n1", ROOM), 1);
    assert_eq!(fleet.hub.unbalanced_unsubscribes(), 0);
}

#[tokio::test]
async fn a_full_room_refuses_the_join_and_keeps_its_members() {
    let fleet = Fleet::with(Settings {
        rooms: RoomSettings { capacity: 2 },
        ..Settings::default()
    });
    let n1 = fleet.node("n1");
    let n2 = fleet.node("n2");
    let (mut ann, mut bob, mut cat) = (Client::new("a1"), Client::new("b1"), Client::new("c1"));
    let a = n1.join(&ann, "Ann").await.expect("ann joins");
    let b = n1.join(&bob, "Bob").await.expect("bob joins");
    ann.saw();
    bob.saw();
    let refusal = n2.join(&cat, "Cat").await.expect_err("the room is full");

    assert_eq!(refusal.code, ErrorCode::RoomFull);
    assert_eq!(refusal.message, "room \"standup\" is full (2 of 2)");
    assert!(cat.saw().is_empty());
    assert!(ann.saw().is_empty());
    assert!(bob.saw().is_empty());
    assert_eq!(fleet.members().await, [a.peer.as_str(), b.peer.as_str()]);
    assert_eq!(n2.stats(), RouterStats::default());
    assert_eq!(fleet.hub.subscriptions("n2", ROOM), 0);
    assert_eq!(fleet.hub.subscriptions("n1", ROOM), 2);
}

#[tokio::test]
async fn a_failed_announcement_frees_the_seat_it_took() {
    let fleet = Fleet::new();
    let n1 = fleet.node("n1");
    let mut ann = Client::new("a1");
    let a = n1.join(&ann, "Ann").await.expect("ann joins");
    ann.saw();
    let mut bob = Client::new("b1");
    n1.faults.fail_next(Op::BusPublish);
    assert_eq!(code(n1.join(&bob, "Bob").await), ErrorCode::Unavailable);

    // Bob was never told `joined`, and nobody was told of Bob.
    assert!(bob.saw().is_empty());
    assert!(ann.saw().is_empty());
    assert_eq!(fleet.members().await, [a.peer.as_str()]);
    assert_eq!(n1.stats(), RouterStats { rooms: 1, seats: 1 });
    assert_eq!(fleet.hub.subscriptions("n1", ROOM), 1);
    let b = n1.join(&bob, "Bob").await.expect("bob joins");
    assert_eq!(bob.saw(), [joined(&[&a])]);
    assert_eq!(ann.saw(), [peer_joined(&b)]);
}

#[tokio::test]
async fn a_failed_announcement_is_taken_back_from_whoever_saw_the_seat() {
    let fleet = Fleet::new();
    let n1 = fleet.node("n1");
    let (mut ann, bob, mut cat) = (Client::new("a1"), Client::new("b1"), Client::new("c1"));
    let a = n1.join(&ann, "Ann").await.expect("ann joins");
    ann.saw();
    // Bob has his seat in presence, and his announcement has not gone out yet.
    let gate = n1.faults.hold_next_after_running(Op::PresenceJoin);
    let joining = n1.spawn_join(&bob, "Bob");
    gate.reached().await;
    let bob_peer = fleet
        .members()
        .await
        .pop()
        .expect("bob's seat is in presence");
    // Cat joins meanwhile: her snapshot lists Bob.
    let c = n1.join(&cat, "Cat").await.expect("cat joins");
    let listed = cat.received();
    assert!(
        matches!(listed.as_slice(), [ServerMessage::Joined { seat, .. }]
            if seat.members.iter().map(|m| m.id.as_str()).eq([a.peer.as_str(), bob_peer.as_str()])),
        "{listed:?}"
    );
    // Then Bob's announcement fails.
    n1.faults.fail_next(Op::BusPublish);
    gate.open();
    assert_eq!(code(finished(joining).await), ErrorCode::Unavailable);

    assert_eq!(
        cat.saw(),
        [format!(
            "peer-left {bob_peer} {:?}",
            LeaveReason::Disconnected
        )]
    );
    assert_eq!(ann.saw(), [peer_joined(&c)]);
    assert_eq!(fleet.members().await, [a.peer.as_str(), c.peer.as_str()]);
    assert!(!n1.router.is_member(&room(ROOM), &bob_peer));
}

#[tokio::test]
async fn an_event_during_a_join_reaches_the_joiner_once_before_its_snapshot() {
    let fleet = Fleet::new();
    let n1 = fleet.node("n1");
    let (mut ann, mut bob, mut cat) = (Client::new("a1"), Client::new("b1"), Client::new("c1"));
    let a = n1.join(&ann, "Ann").await.expect("ann joins");
    ann.saw();
    let gate = n1.faults.hold_next(Op::PresenceJoin);
    let joining = n1.spawn_join(&bob, "Bob");
    gate.reached().await;
    // Cat joins while Bob is subscribed but not yet seated: Bob's snapshot will list her.
    let c = n1.join(&cat, "Cat").await.expect("cat joins");
    gate.open();
    let b = finished(joining).await.expect("bob joins");

    assert_eq!(bob.saw(), [joined(&[&a, &c])]);
    assert_eq!(cat.saw(), [joined(&[&a]), peer_joined(&b)]);
    assert_eq!(ann.saw(), [peer_joined(&c), peer_joined(&b)]);
}

#[tokio::test]
async fn an_event_during_a_join_reaches_the_joiner_once_after_its_snapshot() {
    let fleet = Fleet::new();
    let n1 = fleet.node("n1");
    let (mut ann, mut bob, mut cat) = (Client::new("a1"), Client::new("b1"), Client::new("c1"));
    let a = n1.join(&ann, "Ann").await.expect("ann joins");
    ann.saw();
    let gate = n1.faults.hold_next_after_running(Op::PresenceJoin);
    let joining = n1.spawn_join(&bob, "Bob");
    gate.reached().await;
    // Bob's snapshot is taken; Cat's lists Bob, and her announcement reaches Bob
    // while his seat is still pending.
    let c = n1.join(&cat, "Cat").await.expect("cat joins");
    gate.open();
    let b = finished(joining).await.expect("bob joins");

    assert_eq!(bob.saw(), [joined(&[&a]), peer_joined(&c)]);
    // Bob's own announcement comes after Cat's snapshot listed him: not repeated.
    assert_eq!(cat.saw(), [joined(&[&a, &b])]);
    assert_eq!(ann.saw(), [peer_joined(&c), peer_joined(&b)]);
    assert_eq!(fleet.published(is_peer_joined(&b)), 1);
}

#[tokio::test]
async fn announcements_reordered_between_nodes_reach_everyone_once() {
    let fleet = Fleet::new();
    let n1 = fleet.node("n1");
    let n2 = fleet.node("n2");
    let (mut ann, mut bob, mut cat) = (Client::new("a1"), Client::new("b1"), Client::new("c1"));
    let a = n2.join(&ann, "Ann").await.expect("ann joins");
    ann.saw();
    // Cat takes her seat first, but her announcement waits on its way to the
    // bus while Bob joins on another node and announces himself: Bob's
    // overtakes hers. (The bus numbers each event as it publishes it, so what
    // overtakes is the publish itself; delivery keeps publish order.)
    let gate = n1.faults.hold_next(Op::BusPublish);
    let joining = n1.spawn_join(&cat, "Cat");
    gate.reached().await;
    let b = n2.join(&bob, "Bob").await.expect("bob joins");
    gate.open();
    let c = finished(joining).await.expect("cat joins");
    assert_eq!(cat.saw(), [joined(&[&a]), peer_joined(&b)]);
    assert_eq!(bob.saw(), [joined(&[&a, &c])]);

    assert_eq!(ann.saw(), [peer_joined(&b), peer_joined(&c)]);
    assert!(cat.saw().is_empty());
    assert!(bob.saw().is_empty());
    for node in [&n1, &n2] {
        for seat in [&a, &b, &c] {
            assert!(
                node.router.is_member(&room(ROOM), &seat.peer),
                "{}",
                node.id
            );
        }
    }
}

#[tokio::test]
async fn events_reach_only_the_sessions_they_concern() {
    let fleet = Fleet::new();
    let n1 = fleet.node("n1");
    let n2 = fleet.node("n2");
    let n3 = fleet.node("n3");
    let (mut ann, mut bob) = (Client::new("a1"), Client::new("b1"));
    let (mut dan, mut eve) = (Client::new("d1"), Client::new("e1"));
    let a = n1.join(&ann, "Ann").await.expect("ann joins");
    let d = n1.join_room(&dan, "retro", "Dan").await.expect("dan joins");
    let b = n2.join(&bob, "Bob").await.expect("bob joins");
    let e = n3.join_room(&eve, "retro", "Eve").await.expect("eve joins");
    for client in [&mut ann, &mut bob, &mut dan, &mut eve] {
        client.received();
    }

    n2.offer(&b, &a.peer, "for ann").await.expect("relayed");
    n1.offer(&a, &b.peer, "for bob").await.expect("relayed");
    n3.offer(&e, &d.peer, "for dan").await.expect("relayed");
    let across = n2.offer(&b, &d.peer, "for dan").await;
    let to_self = n1.offer(&a, &a.peer, "for me").await;

    assert_eq!(across.map_err(|r| r.code), Err(ErrorCode::UnknownPeer));
    assert_eq!(to_self.map_err(|r| r.code), Err(ErrorCode::UnknownPeer));
    assert_eq!(ann.saw(), [offer(&b, "for ann")]);
    assert_eq!(bob.saw(), [offer(&a, "for bob")]);
    assert_eq!(dan.saw(), [offer(&e, "for dan")]);
    assert!(eve.saw().is_empty());
    // Scope: a node hears only the rooms where it holds seats.
    assert_eq!(fleet.hub.subscriptions("n2", "retro"), 0);
    assert_eq!(fleet.hub.subscriptions("n3", ROOM), 0);
    assert!(!n3.router.is_member(&room(ROOM), &a.peer));
    assert_eq!(
        fleet.members_of("retro").await,
        [d.peer.as_str(), e.peer.as_str()]
    );
}

// Resuming.

/// Ann and Bob in the room on n1; Ann's token.
async fn ann_and_bob(n1: &Node, ann: &mut Client, bob: &mut Client) -> (Seat, Seat, String) {
    let a = n1.join(ann, "Ann").await.expect("ann joins");
    let token = ann.token();
    let b = n1.join(bob, "Bob").await.expect("bob joins");
    bob.saw();
    ann.saw();
    (a, b, token)
}

#[tokio::test]
async fn a_resume_with_a_wrong_secret_changes_nothing() {
    let fleet = Fleet::new();
    let n1 = fleet.node("n1");
    let (mut ann, mut bob, mut thief) = (Client::new("a1"), Client::new("b1"), Client::new("x1"));
    let (a, b, token) = ann_and_bob(&n1, &mut ann, &mut bob).await;
    let before = n1.faults.calls().len();
    assert_eq!(
        code(n1.resume(&thief, &forged(&token)).await),
        ErrorCode::ResumeFailed
    );

    // One read, nothing else: no reservation, no subscription, no write.
    assert_eq!(n1.faults.calls()[before..], [Op::PresenceSeat]);
    n1.offer(&b, &a.peer, "still ann's").await.expect("relayed");
    assert_eq!(ann.saw(), [offer(&b, "still ann's")]);
    assert_eq!(ann.evicted(), None);
    assert!(thief.saw().is_empty());
    let seat = fleet.seat(&a.peer).await.expect("ann's seat");
    assert_eq!((seat.conn.as_str(), seat.parked), ("a1", None));
    assert_eq!(fleet.hub.subscriptions("n1", ROOM), 2);
    assert!(bob.saw().is_empty());
}

#[tokio::test]
async fn a_failed_presence_resume_gives_the_owner_back_its_seat_and_what_was_held() {
    let fleet = Fleet::new();
    let n1 = fleet.node("n1");
    let (mut ann, mut bob, mut again) = (Client::new("a1"), Client::new("b1"), Client::new("a2"));
    let (a, b, token) = ann_and_bob(&n1, &mut ann, &mut bob).await;
    let gate = n1.faults.hold_next_then_fail(Op::PresenceResume);
    let resuming = n1.spawn_resume(&again, &token);
    gate.reached().await;
    // Frames for Ann while the resume is pending wait for its outcome.
    n1.offer(&b, &a.peer, "during").await.expect("relayed");
    assert!(ann.saw().is_empty());
    gate.open();
    assert_eq!(code(finished(resuming).await), ErrorCode::Unavailable);

    n1.offer(&b, &a.peer, "after").await.expect("relayed");
    assert_eq!(ann.saw(), [offer(&b, "during"), offer(&b, "after")]);
    assert_eq!(ann.evicted(), None);
    assert!(again.saw().is_empty());
    let seat = fleet.seat(&a.peer).await.expect("ann's seat");
    assert_eq!((seat.conn.as_str(), seat.parked), ("a1", None));
    assert_eq!(fleet.hub.subscriptions("n1", ROOM), 2);
    assert_eq!(n1.stats(), RouterStats { rooms: 1, seats: 2 });
    assert!(bob.saw().is_empty());
}

#[tokio::test]
async fn a_resume_while_the_owner_leaves_keeps_the_seat_without_a_departure() {
    let fleet = Fleet::new();
    let n1 = fleet.node("n1");
    let (mut ann, mut bob, mut again) = (Client::new("a1"), Client::new("b1"), Client::new("a2"));
    let (a, b, token) = ann_and_bob(&n1, &mut ann, &mut bob).await;
    let gate = n1.faults.hold_next(Op::PresenceLeave);
    let leaving = {
        let (rooms, seat) = (Arc::clone(&n1.rooms), a.clone());
        tokio::spawn(async move { rooms.leave(&seat, LeaveReason::Left).await })
    };
    gate.reached().await;
    let resumed_seat = n1.resume(&again, &token).await.expect("resumes");
    gate.open();
    finished(leaving).await;

    assert_eq!(resumed_seat.conn, "a2");
    assert_eq!(again.saw(), [resumed(&[&b])]);
    // The old socket's leave found the seat moved: nobody is told of a departure.
    assert!(bob.saw().is_empty());
    assert_eq!(fleet.published(is_peer_left(&a)), 0);
    let seat = fleet.seat(&a.peer).await.expect("ann's seat");
    assert_eq!((seat.conn.as_str(), seat.parked), ("a2", None));
    n1.offer(&b, &a.peer, "to the new socket")
        .await
        .expect("relayed");
    assert_eq!(again.saw(), [offer(&b, "to the new socket")]);
    assert!(ann.saw().is_empty());
    assert_eq!(fleet.hub.subscriptions("n1", ROOM), 2);
    assert_eq!(n1.stats(), RouterStats { rooms: 1, seats: 2 });
}

#[tokio::test]
async fn a_leave_while_a_resume_waits_frees_the_seat_and_the_resume_fails() {
    let fleet = Fleet::new();
    let n1 = fleet.node("n1");
    let (mut ann, mut bob, mut again) = (Client::new("a1"), Client::new("b1"), Client::new("a2"));
    let (a, b, token) = ann_and_bob(&n1, &mut ann, &mut bob).await;
    let gate = n1.faults.hold_next(Op::PresenceResume);
    let resuming = n1.spawn_resume(&again, &token);
    gate.reached().await;
    n1.rooms.leave(&a, LeaveReason::Left).await;
    gate.open();
    assert_eq!(code(finished(resuming).await), ErrorCode::ResumeFailed);

    assert_eq!(bob.saw(), [peer_left(&a, LeaveReason::Left)]);
    assert!(again.saw().is_empty());
    assert!(ann.saw().is_empty());
    assert_eq!(fleet.members().await, [b.peer.as_str()]);
    assert_eq!(fleet.hub.subscriptions("n1", ROOM), 1);
    assert_eq!(n1.stats(), RouterStats { rooms: 1, seats: 1 });
    assert!(!n1.router.is_member(&room(ROOM), &a.peer));
}

/// Two resumes of Ann's parked seat read it at the same time and reach presence
/// in the order `first` says: exactly one gets the seat, and the router, presence
/// and the others agree on which.
async fn two_resumes(on_two_nodes: bool, first: usize) {
    let fleet = Fleet::new();
    let n1 = fleet.node("n1");
    let (mut ann, mut bob) = (Client::new("a1"), Client::new("b1"));
    let (a, b, token) = ann_and_bob(&n1, &mut ann, &mut bob).await;
    n1.rooms.park(a.clone(), LeaveReason::Disconnected, 0).await;
    let others = [fleet.node("n2"), fleet.node("n3")];
    let nodes: [&Node; 2] = if on_two_nodes {
        [&others[0], &others[1]]
    } else {
        [&n1, &n1]
    };
    let mut clients = [Client::new("x"), Client::new("y")];
    let mut gates = Vec::new();
    let mut tasks = Vec::new();
    for (node, client) in nodes.iter().zip(&clients) {
        let gate = node.faults.hold_next(Op::PresenceResume);
        tasks.push(Some(node.spawn_resume(client, &token)));
        gate.reached().await;
        gates.push(gate);
    }
    let mut results: [Option<Result<Seat, Refusal>>; 2] = [None, None];
    for i in [first, 1 - first] {
        gates[i].open();
        results[i] = Some(finished(tasks[i].take().expect("spawned")).await);
    }
    let (winner, loser) = (first, 1 - first);
    let (winner_result, loser_result) = (results[winner].take(), results[loser].take());
    let won = winner_result
        .expect("ran")
        .expect("the first resume to reach presence wins");
    assert_eq!(
        code(loser_result.expect("ran")),
        ErrorCode::ResumeFailed,
        "the second resume read a seat that has moved since"
    );

    assert_eq!(won.conn, clients[winner].conn);
    assert_eq!(clients[winner].saw(), [resumed(&[&b])]);
    assert_eq!(clients[winner].evicted(), None);
    assert!(clients[loser].saw().is_empty());
    assert_eq!(clients[loser].evicted(), None);
    let seat = fleet.seat(&a.peer).await.expect("ann's seat");
    assert_eq!(
        (seat.conn.as_str(), seat.node.as_str(), seat.parked),
        (
            clients[winner].conn.as_str(),
            nodes[winner].id.as_str(),
            None
        )
    );
    n1.offer(&b, &a.peer, "for the winner")
        .await
        .expect("relayed");
    assert_eq!(clients[winner].saw(), [offer(&b, "for the winner")]);
    assert!(clients[loser].saw().is_empty());
    assert!(bob.saw().is_empty(), "no flap for Bob");
    if on_two_nodes {
        assert_eq!(fleet.hub.subscriptions(nodes[winner].id.as_str(), ROOM), 1);
        assert_eq!(fleet.hub.subscriptions(nodes[loser].id.as_str(), ROOM), 0);
        assert_eq!(nodes[loser].stats(), RouterStats::default());
    } else {
        assert_eq!(fleet.hub.subscriptions("n1", ROOM), 2);
        assert_eq!(n1.stats(), RouterStats { rooms: 1, seats: 2 });
    }
    assert_eq!(fleet.hub.unbalanced_unsubscribes(), 0);
}

#[tokio::test]
async fn two_resumes_of_one_seat_on_one_node_the_first_to_presence_wins() {
    two_resumes(false, 0).await;
}

#[tokio::test]
async fn two_resumes_of_one_seat_on_one_node_the_later_reservation_wins() {
    two_resumes(false, 1).await;
}

#[tokio::test]
async fn two_resumes_of_one_seat_on_two_nodes_one_wins() {
    two_resumes(true, 0).await;
    two_resumes(true, 1).await;
}

#[tokio::test]
async fn a_later_resume_is_not_evicted_by_the_move_before_it() {
    let fleet = Fleet::new();
    let n1 = fleet.node("n1");
    let (n2, n3) = (fleet.node("n2"), fleet.node("n3"));
    let (mut ann, mut bob) = (Client::new("a1"), Client::new("b1"));
    let (a, b, token) = ann_and_bob(&n1, &mut ann, &mut bob).await;
    n1.rooms.park(a.clone(), LeaveReason::Disconnected, 0).await;
    let (mut x, mut y) = (Client::new("x"), Client::new("y"));
    // x has moved the seat in presence but not yet announced it.
    let x_gate = n2.faults.hold_next_after_running(Op::PresenceResume);
    let x_resume = n2.spawn_resume(&x, &token);
    x_gate.reached().await;
    // y reads the seat as x's and reserves it on n3; then x's move reaches n3.
    let y_gate = n3.faults.hold_next(Op::PresenceResume);
    let y_resume = n3.spawn_resume(&y, &token);
    y_gate.reached().await;
    x_gate.open();
    let x_seat = finished(x_resume).await.expect("x resumes");
    y_gate.open();
    finished(y_resume)
        .await
        .expect("y resumes after x: the seat was x's");

    assert_eq!(y.evicted(), None);
    assert_eq!(x.evicted(), Some(Eviction::SeatMoved));
    assert_eq!(x.saw(), [resumed(&[&b])]);
    assert_eq!(y.saw(), [resumed(&[&b])]);
    let seat = fleet.seat(&a.peer).await.expect("ann's seat");
    assert_eq!((seat.conn.as_str(), seat.node.as_str()), ("y", "n3"));
    // x's session ends on its eviction, giving back only what it held locally.
    n2.rooms.release(&x_seat).await;
    assert_eq!(n2.stats(), RouterStats::default());
    n1.offer(&b, &a.peer, "for y").await.expect("relayed");
    assert_eq!(y.saw(), [offer(&b, "for y")]);
    assert!(x.saw().is_empty());
    assert!(bob.saw().is_empty());
}

// Parking and expiry, on tokio's paused clock: the resume window passes at once.

#[tokio::test(start_paused = true)]
async fn a_parked_seat_expires_after_the_window_with_one_departure() {
    let fleet = Fleet::new();
    let window = fleet.settings.resume.window;
    let n1 = fleet.node("n1");
    let (mut ann, mut bob) = (Client::new("a1"), Client::new("b1"));
    let (a, b, _token) = ann_and_bob(&n1, &mut ann, &mut bob).await;
    n1.rooms.park(a.clone(), LeaveReason::TimedOut, 0).await;
    n1.timers_hold(1).await;

    let seat = fleet.seat(&a.peer).await.expect("ann's seat is kept");
    assert_eq!(seat.parked.map(|p| p.reason), Some(LeaveReason::TimedOut));
    assert_eq!(fleet.hub.subscriptions("n1", ROOM), 1);
    assert_eq!(n1.stats(), RouterStats { rooms: 1, seats: 1 });
    tokio::time::sleep(window - Duration::from_millis(1)).await;
    assert!(bob.saw().is_empty(), "nothing before the window has passed");
    tokio::time::sleep(Duration::from_millis(2)).await;
    assert_eq!(bob.saw(), [peer_left(&a, LeaveReason::TimedOut)]);
    n1.timers_hold(0).await;
    tokio::time::sleep(window * 3).await;
    assert!(bob.saw().is_empty());
    assert_eq!(n1.faults.count(Op::PresenceExpire), 1, "fired once");
    assert_eq!(fleet.published(is_peer_left(&a)), 1);
    assert_eq!(fleet.members().await, [b.peer.as_str()]);
    assert!(!n1.router.is_member(&room(ROOM), &a.peer));
    assert!(ann.saw().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_seat_resumed_inside_the_window_outlives_its_expiry_timer() {
    let fleet = Fleet::new();
    let window = fleet.settings.resume.window;
    let n1 = fleet.node("n1");
    let n2 = fleet.node("n2");
    let (mut ann, mut bob, mut again) = (Client::new("a1"), Client::new("b1"), Client::new("a2"));
    let (a, b, token) = ann_and_bob(&n1, &mut ann, &mut bob).await;
    n1.rooms.park(a.clone(), LeaveReason::Disconnected, 0).await;
    tokio::time::sleep(window / 2).await;
    n2.resume(&again, &token)
        .await
        .expect("resumes inside the window");
    tokio::time::sleep(window * 2).await;

    assert_eq!(again.saw(), [resumed(&[&b])]);
    assert!(bob.saw().is_empty(), "no flap");
    assert_eq!(fleet.published(is_peer_left(&a)), 0);
    let seat = fleet.seat(&a.peer).await.expect("ann's seat");
    assert_eq!((seat.conn.as_str(), seat.parked), ("a2", None));
}

#[tokio::test(start_paused = true)]
async fn a_seat_parked_twice_is_announced_gone_once() {
    let fleet = Fleet::new();
    let window = fleet.settings.resume.window;
    let n1 = fleet.node("n1");
    let (mut ann, mut bob, mut again) = (Client::new("a1"), Client::new("b1"), Client::new("a2"));
    let (a, b, token) = ann_and_bob(&n1, &mut ann, &mut bob).await;
    n1.rooms.park(a.clone(), LeaveReason::Disconnected, 0).await;
    tokio::time::sleep(window / 2).await;
    let second = n1.resume(&again, &token).await.expect("resumes");
    again.saw();
    n1.rooms.park(second, LeaveReason::TimedOut, 0).await;
    // The first timer fires: the seat it parked is another connection's now.
    tokio::time::sleep(window / 2 + Duration::from_millis(1)).await;
    assert!(bob.saw().is_empty());
    assert!(fleet.seat(&a.peer).await.is_some());
    tokio::time::sleep(window).await;

    assert_eq!(bob.saw(), [peer_left(&a, LeaveReason::TimedOut)]);
    assert_eq!(fleet.published(is_peer_left(&a)), 1);
    assert_eq!(fleet.members().await, [b.peer.as_str()]);
    assert_eq!(fleet.hub.subscriptions("n1", ROOM), 1);
}

#[tokio::test(start_paused = true)]
async fn a_resume_on_the_parking_node_cancels_the_timer() {
    let fleet = Fleet::new();
    let window = fleet.settings.resume.window;
    let n1 = fleet.node("n1");
    let (mut ann, mut bob, mut again) = (Client::new("a1"), Client::new("b1"), Client::new("a2"));
    let (a, b, token) = ann_and_bob(&n1, &mut ann, &mut bob).await;
    n1.rooms.park(a.clone(), LeaveReason::Disconnected, 0).await;
    n1.timers_hold(1).await;
    tokio::time::sleep(window / 2).await;
    n1.resume(&again, &token)
        .await
        .expect("resumes inside the window");
    n1.timers_hold(0).await;
    tokio::time::sleep(window * 3).await;

    assert_eq!(again.saw(), [resumed(&[&b])]);
    assert!(bob.saw().is_empty(), "no flap");
    assert_eq!(
        n1.faults.count(Op::PresenceExpire),
        0,
        "the timer never fired"
    );
    let seat = fleet.seat(&a.peer).await.expect("ann's seat");
    assert_eq!((seat.conn.as_str(), seat.parked), ("a2", None));
}

#[tokio::test(start_paused = true)]
async fn a_parked_seat_whose_grant_has_ended_is_freed_at_the_resume_and_its_timer_cancelled() {
    let mut settings = Settings::default();
    settings.auth.mode = AuthMode::Jwt;
    settings.auth.jwt_secret = "a-secret-of-at-least-thirty-two-bytes".into();
    // Enough to let a token whose grant ended this second in: the wall clock
    // does not move on tokio's paused one.
    settings.auth.leeway = Duration::from_secs(3600);
    let fleet = Fleet::with(settings);
    let window = fleet.settings.resume.window;
    let n1 = fleet.node("n1");
    let auth = Authenticator::new(&fleet.settings.auth);
    let ends_now = auth.mint(ROOM, "ann", None, Duration::ZERO).expect("mints");
    let lasts = auth
        .mint(ROOM, "bob", None, Duration::from_secs(3600))
        .expect("mints");
    let (mut ann, mut bob, again) = (Client::new("a1"), Client::new("b1"), Client::new("a2"));
    let a = n1
        .join_with_token(&ann, &ends_now)
        .await
        .expect("ann joins");
    let resume_token = ann.token();
    n1.join_with_token(&bob, &lasts).await.expect("bob joins");
    bob.saw();
    n1.rooms.park(a.clone(), LeaveReason::Disconnected, 0).await;
    n1.timers_hold(1).await;
    assert_eq!(
        code(n1.resume(&again, &resume_token).await),
        ErrorCode::AuthExpired
    );
    n1.timers_hold(0).await;
    assert_eq!(bob.saw(), [peer_left(&a, LeaveReason::Disconnected)]);
    tokio::time::sleep(window * 3).await;

    assert!(bob.saw().is_empty());
    assert_eq!(
        n1.faults.count(Op::PresenceExpire),
        1,
        "freed by the resume only"
    );
    assert_eq!(fleet.published(is_peer_left(&a)), 1);
}

#[tokio::test(start_paused = true)]
async fn a_late_leave_of_an_older_socket_keeps_the_newer_sockets_timer() {
    let fleet = Fleet::new();
    let window = fleet.settings.resume.window;
    let n1 = fleet.node("n1");
    let (mut ann, mut bob, mut again) = (Client::new("a1"), Client::new("b1"), Client::new("a2"));
    let (a, b, token) = ann_and_bob(&n1, &mut ann, &mut bob).await;
    let newer = n1.resume(&again, &token).await.expect("resumes");
    again.saw();
    n1.rooms.park(newer, LeaveReason::TimedOut, 0).await;
    n1.timers_hold(1).await;
    // The first socket's session ends after the second took the seat over.
    n1.rooms.leave(&a, LeaveReason::Left).await;
    n1.timers_hold(1).await;
    assert!(bob.saw().is_empty(), "the leave found another connection");
    tokio::time::sleep(window + Duration::from_millis(1)).await;

    assert_eq!(bob.saw(), [peer_left(&a, LeaveReason::TimedOut)]);
    assert_eq!(fleet.members().await, [b.peer.as_str()]);
}

#[tokio::test(start_paused = true)]
async fn many_parked_seats_wait_in_one_queue_and_each_expires_once() {
    let mut settings = Settings::default();
    settings.rooms.capacity = 64;
    let fleet = Fleet::with(settings);
    let window = fleet.settings.resume.window;
    let n1 = fleet.node("n1");
    let mut bob = Client::new("b0");
    let b = n1.join(&bob, "Bob").await.expect("bob joins");
    bob.saw();
    let mut parked = Vec::new();
    for i in 0..50 {
        let client = Client::new(&format!("c{i}"));
        let seat = n1.join(&client, "Guest").await.expect("joins");
        parked.push(seat);
    }
    bob.saw();
    for seat in &parked {
        n1.rooms
            .park(seat.clone(), LeaveReason::Disconnected, 0)
            .await;
    }
    n1.timers_hold(50).await;
    tokio::time::sleep(window + Duration::from_millis(1)).await;
    n1.timers_hold(0).await;
    tokio::time::sleep(window * 3).await;

    // Due at the same instant, freed side by side: in no particular order.
    let mut expected: Vec<String> = parked
        .iter()
        .map(|seat| peer_left(seat, LeaveReason::Disconnected))
        .collect();
    let mut saw = bob.saw();
    expected.sort();
    saw.sort();
    assert_eq!(saw, expected);
    assert_eq!(n1.faults.count(Op::PresenceExpire), 50);
    assert_eq!(fleet.members().await, [b.peer.as_str()]);
}

#[tokio::test(start_paused = true)]
async fn the_seat_timers_end_when_the_node_stops_with_seats_parked() {
    let fleet = Fleet::new();
    let window = fleet.settings.resume.window;
    let n1 = fleet.node("n1");
    let (mut ann, mut bob) = (Client::new("a1"), Client::new("b1"));
    let (a, b, _token) = ann_and_bob(&n1, &mut ann, &mut bob).await;
    n1.rooms.park(a.clone(), LeaveReason::Disconnected, 0).await;
    n1.timers_hold(1).await;
    n1.lifecycle.advance(Phase::Stopping);
    let started = tokio::time::Instant::now();
    assert!(
        n1.lifecycle.tasks_ended_within(window).await,
        "the task ended"
    );
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "at once, not by a timeout"
    );
    // What is parked now stays for the other nodes' sweep, as when the process exits.
    n1.rooms.park(b.clone(), LeaveReason::Disconnected, 0).await;
    tokio::time::sleep(window * 3).await;

    assert_eq!(n1.faults.count(Op::PresenceExpire), 0);
    assert!(fleet.seat(&a.peer).await.is_some());
    assert!(fleet.seat(&b.peer).await.is_some());
}

// Presence failing when a seat is to be freed: tried again until it answers, so
// that no seat outlives its socket on a node that is alive.

#[tokio::test(start_paused = true)]
async fn a_failed_leave_is_tried_again_and_announced_once() {
    let fleet = Fleet::new();
    let n1 = fleet.node("n1");
    let (mut ann, mut bob) = (Client::new("a1"), Client::new("b1"));
    let (a, b, _token) = ann_and_bob(&n1, &mut ann, &mut bob).await;
    n1.faults.fail_next(Op::PresenceLeave);
    n1.rooms.leave(&a, LeaveReason::Left).await;

    assert!(bob.saw().is_empty());
    assert!(
        fleet.seat(&a.peer).await.is_some(),
        "presence did not answer"
    );
    // The local seat and subscription are given back at once all the same.
    assert_eq!(n1.stats(), RouterStats { rooms: 1, seats: 1 });
    assert_eq!(fleet.hub.subscriptions("n1", ROOM), 1);
    tokio::time::sleep(Duration::from_millis(1001)).await;
    assert_eq!(bob.saw(), [peer_left(&a, LeaveReason::Left)]);
    assert_eq!(fleet.members().await, [b.peer.as_str()]);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(bob.saw().is_empty());
    assert_eq!(n1.faults.count(Op::PresenceLeave), 2);
}

#[tokio::test(start_paused = true)]
async fn a_failed_expiry_is_tried_again_until_presence_answers() {
    let fleet = Fleet::new();
    let window = fleet.settings.resume.window;
    let n1 = fleet.node("n1");
    let (mut ann, mut bob) = (Client::new("a1"), Client::new("b1"));
    let (a, b, _token) = ann_and_bob(&n1, &mut ann, &mut bob).await;
    n1.rooms.park(a.clone(), LeaveReason::Disconnected, 0).await;
    n1.faults.fail_next(Op::PresenceExpire);
    n1.faults.fail_next(Op::PresenceExpire);
    tokio::time::sleep(window + Duration::from_millis(1)).await;
    assert!(bob.saw().is_empty());
    assert_eq!(n1.faults.count(Op::PresenceExpire), 1);
    // Waiting again, for its next try.
    n1.timers_hold(1).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(bob.saw().is_empty());
    assert!(fleet.seat(&a.peer).await.is_some());
    assert_eq!(n1.faults.count(Op::PresenceExpire), 2);
    tokio::time::sleep(Duration::from_secs(1)).await;

    assert_eq!(bob.saw(), [peer_left(&a, LeaveReason::Disconnected)]);
    assert_eq!(fleet.members().await, [b.peer.as_str()]);
    assert_eq!(n1.faults.count(Op::PresenceExpire), 3);
    n1.timers_hold(0).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        n1.faults.count(Op::PresenceExpire),
        3,
        "no try after success"
    );
    assert_eq!(fleet.published(is_peer_left(&a)), 1);
}

#[tokio::test(start_paused = true)]
async fn a_failed_park_still_frees_the_seat_when_the_window_passes() {
    let fleet = Fleet::new();
    let window = fleet.settings.resume.window;
    let n1 = fleet.node("n1");
    let (mut ann, mut bob) = (Client::new("a1"), Client::new("b1"));
    let (a, b, _token) = ann_and_bob(&n1, &mut ann, &mut bob).await;
    n1.faults.fail_next(Op::PresencePark);
    n1.rooms.park(a.clone(), LeaveReason::TimedOut, 0).await;
    let seat = fleet.seat(&a.peer).await.expect("still there");
    assert_eq!((seat.conn.as_str(), seat.parked), ("a1", None));
    tokio::time::sleep(window + Duration::from_millis(1)).await;

    assert_eq!(bob.saw(), [peer_left(&a, LeaveReason::TimedOut)]);
    assert_eq!(fleet.members().await, [b.peer.as_str()]);
}

#[tokio::test(start_paused = true)]
async fn a_failed_join_whose_seat_cannot_be_taken_back_at_once_is_freed_later() {
    let fleet = Fleet::new();
    let n1 = fleet.node("n1");
    let (mut ann, mut bob) = (Client::new("a1"), Client::new("b1"));
    let a = n1.join(&ann, "Ann").await.expect("ann joins");
    ann.saw();
    n1.faults.fail_next(Op::BusPublish);
    n1.faults.fail_next(Op::PresenceLeave);
    assert_eq!(code(n1.join(&bob, "Bob").await), ErrorCode::Unavailable);
    assert_eq!(fleet.members().await.len(), 2, "the seat is still taken");
    tokio::time::sleep(Duration::from_millis(1001)).await;

    assert_eq!(fleet.members().await, [a.peer.as_str()]);
    assert!(ann.saw().is_empty());
    assert!(bob.saw().is_empty());
    assert_eq!(n1.stats(), RouterStats { rooms: 1, seats: 1 });
}

// Sequenced delivery: every frame of the room's stream numbered on the seat's
// stream, and a resume with `lastSeq` replaying exactly what the client missed.

/// A frame as the client gets it: its `seq` (none for replies) and its line.
fn numbered(out: &Outbound) -> (Option<u64>, String) {
    let value: serde_json::Value = serde_json::from_str(&out.text).expect("JSON");
    let message: ServerMessage = serde_json::from_str(&out.text).expect("a server message");
    (value["seq"].as_u64(), line(&message))
}

impl Client {
    /// The frames since the last look, with their `seq`.
    fn numbered(&mut self) -> Vec<(Option<u64>, String)> {
        std::iter::from_fn(|| self.outbox.try_recv())
            .map(|out| numbered(&out))
            .collect()
    }

    /// The resume token and stream of the `joined` that must be the only thing
    /// this client was sent since the last look.
    fn joined_stream(&mut self) -> (String, String) {
        match self.received().as_slice() {
            [ServerMessage::Joined { seat, .. }] => (
                seat.resume_token.clone(),
                seat.stream.clone().expect("joined names its stream"),
            ),
            other => panic!("expected one joined frame, got {other:?}"),
        }
    }
}

/// The `replay` of the `resumed` frame first in `frames`.
fn replay_of(frames: &[(Option<u64>, String)], message: &ServerMessage) -> Option<Replay> {
    assert!(
        frames
            .first()
            .is_some_and(|(seq, l)| seq.is_none() && l.starts_with("resumed")),
        "resumed first, unnumbered: {frames:?}"
    );
    match message {
        ServerMessage::Resumed { replay, .. } => *replay,
        other => panic!("not resumed: {other:?}"),
    }
}

/// Ann and Bob on n1, Ann having processed Bob's arrival and one offer; her
/// token, stream and last processed seq.
async fn ann_processed_one_offer(
    n1: &Node,
    ann: &mut Client,
    bob: &mut Client,
) -> (Seat, Seat, String, String, u64) {
    let a = n1.join(ann, "Ann").await.expect("ann joins");
    let (token, stream) = ann.joined_stream();
    let b = n1.join(bob, "Bob").await.expect("bob joins");
    bob.saw();
    n1.offer(&b, &a.peer, "first").await.expect("relayed");
    let seen = ann.numbered();
    assert_eq!(
        seen.iter().map(|(_, l)| l.clone()).collect::<Vec<_>>(),
        [peer_joined(&b), offer(&b, "first")]
    );
    let seqs: Vec<u64> = seen.iter().filter_map(|(seq, _)| *seq).collect();
    assert_eq!(seqs.len(), 2, "both frames numbered: {seen:?}");
    assert!(seqs[0] < seqs[1], "numbers go up: {seqs:?}");
    (a, b, token, stream, seqs[1])
}

/// Takes the next frames of a resumed client: `resumed` with its `replay`, then
/// the numbered frames.
fn resumed_with(client: &mut Client) -> (Option<Replay>, Vec<(u64, String)>) {
    let outs: Vec<Outbound> = std::iter::from_fn(|| client.outbox.try_recv()).collect();
    let frames: Vec<(Option<u64>, String)> = outs.iter().map(numbered).collect();
    let first: ServerMessage = serde_json::from_str(&outs[0].text).expect("resumed");
    let replay = replay_of(&frames, &first);
    let rest = frames[1..]
        .iter()
        .map(|(seq, l)| (seq.unwrap_or_else(|| panic!("unnumbered {l}")), l.clone()))
        .collect();
    (replay, rest)
}

#[tokio::test]
async fn a_resume_on_another_node_replays_exactly_what_the_parked_seat_missed_in_order() {
    let fleet = Fleet::new();
    let (n1, n2) = (fleet.node("n1"), fleet.node("n2"));
    let (mut ann, mut bob, again) = (Client::new("a1"), Client::new("b1"), Client::new("a2"));
    let (a, b, token, stream, last) = ann_processed_one_offer(&n1, &mut ann, &mut bob).await;
    n1.rooms
        .park(a.clone(), LeaveReason::Disconnected, last)
        .await;
    // While Ann is parked she is still a member: relays to her are taken, and
    // numbered and kept for her, as room-wide messages are.
    n1.offer(&b, &a.peer, "second")
        .await
        .expect("relayed to a parked seat");
    n1.rooms
        .react(&b, REACTIONS[0], sender)
        .await
        .expect("reaction");
    n1.rooms
        .chat(&b, "are you there?", sender)
        .await
        .expect("chat");
    n1.offer(&b, &a.peer, "third").await.expect("relayed");
    assert!(ann.saw().is_empty(), "the parked socket got nothing");

    let mut again = again;
    n2.resume_after(&again, &token, Some((last, &stream)))
        .await
        .expect("resumes");
    let (replay, frames) = resumed_with(&mut again);
    assert_eq!(replay, Some(Replay::Complete));
    // The chat message came in `resumed.chat`: its number is skipped, not
    // sent twice.
    assert_eq!(
        frames,
        [
            (last + 1, offer(&b, "second")),
            (last + 2, "reaction".to_owned()),
            (last + 4, offer(&b, "third"))
        ],
        "exactly the gap, in order"
    );
    // The stream goes on from there, once.
    n1.offer(&b, &a.peer, "fourth").await.expect("relayed");
    assert_eq!(again.numbered(), [(Some(last + 5), offer(&b, "fourth"))]);
    assert!(ann.saw().is_empty());
}

#[tokio::test]
async fn a_gap_past_the_buffer_is_reported_incomplete_with_what_the_buffer_still_has() {
    let mut settings = Settings::default();
    settings.replay.buffer_messages = 2;
    let fleet = Fleet::with(settings);
    let n1 = fleet.node("n1");
    let (mut ann, mut bob, mut again) = (Client::new("a1"), Client::new("b1"), Client::new("a2"));
    let (a, b, token, stream, last) = ann_processed_one_offer(&n1, &mut ann, &mut bob).await;
    n1.rooms
        .park(a.clone(), LeaveReason::Disconnected, last)
        .await;
    for sdp in ["2", "3", "4"] {
        n1.offer(&b, &a.peer, sdp).await.expect("relayed");
    }
    n1.resume_after(&again, &token, Some((last, &stream)))
        .await
        .expect("resumes");
    let (replay, frames) = resumed_with(&mut again);
    assert_eq!(
        replay,
        Some(Replay::Incomplete),
        "offer 2 fell out of the buffer"
    );
    assert_eq!(
        frames,
        [(last + 2, offer(&b, "3")), (last + 3, offer(&b, "4"))]
    );
}

#[tokio::test]
async fn a_resume_without_last_seq_gets_no_replay_and_another_stream_gets_incomplete() {
    let fleet = Fleet::new();
    let n1 = fleet.node("n1");
    let (mut ann, mut bob) = (Client::new("a1"), Client::new("b1"));
    let (a, b, token, _stream, last) = ann_processed_one_offer(&n1, &mut ann, &mut bob).await;
    n1.rooms.park(a.clone(), LeaveReason::Disconnected, 0).await;
    n1.offer(&b, &a.peer, "missed").await.expect("relayed");
    let mut plain = Client::new("a2");
    n1.resume(&plain, &token).await.expect("resumes");
    match plain.received().as_slice() {
        [ServerMessage::Resumed { replay: None, .. }] => {}
        other => panic!("resumed without replay, and nothing else: {other:?}"),
    }
    let seat = Seat {
        conn: plain.conn.clone(),
        ..a.clone()
    };
    n1.rooms.park(seat, LeaveReason::Disconnected, 0).await;
    let mut stranger = Client::new("a3");
    n1.resume_after(&stranger, &token, Some((last, "0000000000000000")))
        .await
        .expect("resumes");
    let (replay, frames) = resumed_with(&mut stranger);
    assert_eq!(replay, Some(Replay::Incomplete));
    assert!(
        frames.is_empty(),
        "nothing replayed on a stream it does not know"
    );
}

#[tokio::test]
async fn acknowledged_frames_leave_the_buffer_when_the_seat_parks() {
    let fleet = Fleet::new();
    let n1 = fleet.node("n1");
    let (mut ann, mut bob) = (Client::new("a1"), Client::new("b1"));
    let (a, b, token, stream, last) = ann_processed_one_offer(&n1, &mut ann, &mut bob).await;
    n1.offer(&b, &a.peer, "second").await.expect("relayed");
    assert_eq!(ann.numbered(), [(Some(last + 1), offer(&b, "second"))]);
    // Ann acknowledged everything: the buffer drops it at the park, in one call.
    let before = n1.faults.calls().len();
    n1.rooms
        .park(a.clone(), LeaveReason::Disconnected, last + 1)
        .await;
    assert_eq!(
        n1.faults
            .calls()
            .iter()
            .skip(before)
            .filter(|op| **op == Op::BusTrim)
            .count(),
        1
    );
    n1.offer(&b, &a.peer, "third").await.expect("relayed");
    // A client that processed what it acknowledged gets the rest, complete.
    let mut again = Client::new("a2");
    n1.resume_after(&again, &token, Some((last + 1, &stream)))
        .await
        .expect("resumes");
    let (replay, frames) = resumed_with(&mut again);
    assert_eq!(replay, Some(Replay::Complete));
    assert_eq!(frames, [(last + 2, offer(&b, "third"))]);
    // One that claims less than it acknowledged cannot be given back what it
    // said it had: the buffer no longer holds it.
    let seat = Seat {
        conn: again.conn.clone(),
        ..a.clone()
    };
    n1.rooms.park(seat, LeaveReason::Disconnected, 0).await;
    let mut forgetful = Client::new("a3");
    n1.resume_after(&forgetful, &token, Some((last, &stream)))
        .await
        .expect("resumes");
    let (replay, frames) = resumed_with(&mut forgetful);
    assert_eq!(replay, Some(Replay::Incomplete));
    assert_eq!(frames, [(last + 2, offer(&b, "third"))]);
}

#[tokio::test]
async fn a_resume_elsewhere_while_the_old_socket_lingers_loses_and_doubles_nothing() {
    let fleet = Fleet::new();
    let (n1, n2) = (fleet.node("n1"), fleet.node("n2"));
    let (mut ann, mut bob, mut again) = (Client::new("a1"), Client::new("b1"), Client::new("a2"));
    let (a, b, token, stream, last) = ann_processed_one_offer(&n1, &mut ann, &mut bob).await;
    // The old socket still looks alive on n1 and is queued a frame its client
    // never processes: the network is gone.
    n1.offer(&b, &a.peer, "in flight").await.expect("relayed");
    assert_eq!(ann.numbered(), [(Some(last + 1), offer(&b, "in flight"))]);
    n2.resume_after(&again, &token, Some((last, &stream)))
        .await
        .expect("resumes");
    assert_eq!(ann.evicted(), Some(Eviction::SeatMoved), "closed with 4001");
    let (replay, frames) = resumed_with(&mut again);
    assert_eq!(replay, Some(Replay::Complete));
    assert_eq!(frames, [(last + 1, offer(&b, "in flight"))]);
    n1.offer(&b, &a.peer, "after").await.expect("relayed");
    assert_eq!(again.numbered(), [(Some(last + 2), offer(&b, "after"))]);
    // The evicted session closes without writing what was queued since, and
    // lets go of the seat.
    ann.saw();
    n1.rooms.release(&a).await;
    n1.offer(&b, &a.peer, "later").await.expect("relayed");
    assert!(ann.saw().is_empty());
    assert_eq!(again.numbered(), [(Some(last + 3), offer(&b, "later"))]);
}

#[tokio::test]
async fn frames_published_during_a_resume_reach_the_seat_once_after_the_replay() {
    let fleet = Fleet::new();
    let (n1, n2) = (fleet.node("n1"), fleet.node("n2"));
    let (mut ann, mut bob, mut again) = (Client::new("a1"), Client::new("b1"), Client::new("a2"));
    let (a, b, token, stream, last) = ann_processed_one_offer(&n1, &mut ann, &mut bob).await;
    n1.rooms
        .park(a.clone(), LeaveReason::Disconnected, last)
        .await;
    n1.offer(&b, &a.peer, "parked").await.expect("relayed");
    // The buffer is read while the seat is subscribed and pending: a frame
    // published now is in the buffer and held in the seat both.
    let gate = n2.faults.hold_next(Op::BusReplay);
    let resuming = {
        let rooms = Arc::clone(&n2.rooms);
        let (conn, handle) = (again.conn.clone(), again.handle.clone());
        let (token, stream) = (token.clone(), stream.clone());
        tokio::spawn(async move {
            let request = ResumeRequest {
                id: None,
                token: &token,
                last_seq: Some(last),
                stream: Some(&stream),
            };
            rooms.resume(request, &conn, handle).await
        })
    };
    gate.reached().await;
    n1.offer(&b, &a.peer, "meanwhile").await.expect("relayed");
    gate.open();
    finished(resuming).await.expect("resumes");
    let (replay, frames) = resumed_with(&mut again);
    assert_eq!(replay, Some(Replay::Complete));
    assert_eq!(
        frames,
        [
            (last + 1, offer(&b, "parked")),
            (last + 2, offer(&b, "meanwhile"))
        ]
    );
}

// Call state.

/// A change as a client writes it, e.g. `{"muted":true}`.
fn change(json: &str) -> CallStateChange {
    serde_json::from_str(json).expect("a call state change")
}

fn state(json: &str) -> CallState {
    serde_json::from_str(json).expect("a call state")
}

/// The peer-state frames among `frames`, as (peer, state).
fn peer_states(frames: &[ServerMessage]) -> Vec<(String, CallState)> {
    frames
        .iter()
        .filter_map(|frame| match frame {
            ServerMessage::PeerState { peer, state } => Some((peer.clone(), *state)),
            _ => None,
        })
        .collect()
}

/// The members of the one `joined` or `resumed` among `frames`, as (id, state).
fn member_states(frames: &[ServerMessage]) -> Vec<(String, CallState)> {
    let seats: Vec<_> = frames
        .iter()
        .filter_map(|frame| match frame {
            ServerMessage::Joined { seat, .. } | ServerMessage::Resumed { seat, .. } => Some(seat),
            _ => None,
        })
        .collect();
    let [seat] = seats.as_slice() else {
        panic!("expected one joined or resumed frame, got {frames:?}");
    };
    seat.members
        .iter()
        .map(|m| (m.id.clone(), m.state))
        .collect()
}

#[tokio::test]
async fn a_call_state_change_sets_only_its_fields_and_the_others_hear_the_whole_state() {
    let fleet = Fleet::new();
    let n1 = fleet.node("n1");
    let (mut ann, mut bob) = (Client::new("a1"), Client::new("b1"));
    let (a, _b, _token) = ann_and_bob(&n1, &mut ann, &mut bob).await;

    let steps = [
        (r#"{"hand":true}"#, r#"{"hand":true}"#),
        (r#"{"muted":true}"#, r#"{"hand":true,"muted":true}"#),
        (
            r#"{"hand":false,"cameraOff":true,"sharing":true}"#,
            r#"{"muted":true,"cameraOff":true,"sharing":true}"#,
        ),
        // Saying what already holds changes nothing, and is told all the same.
        (
            r#"{"sharing":true}"#,
            r#"{"muted":true,"cameraOff":true,"sharing":true}"#,
        ),
    ];
    for (asked, whole) in steps {
        n1.rooms
            .set_call_state(&a, change(asked), sender)
            .await
            .expect("taken");
        assert_eq!(
            peer_states(&bob.received()),
            [(a.peer.to_string(), state(whole))],
            "after {asked}"
        );
        let seat = fleet.seat(&a.peer).await.expect("ann's seat");
        assert_eq!(seat.state, state(whole), "presence after {asked}");
    }
    assert!(ann.saw().is_empty(), "the sender is not told its own state");
}

#[tokio::test]
async fn a_call_state_presence_cannot_record_is_refused_and_not_told() {
    let fleet = Fleet::new();
    let n1 = fleet.node("n1");
    let (mut ann, mut bob) = (Client::new("a1"), Client::new("b1"));
    let (a, _b, _token) = ann_and_bob(&n1, &mut ann, &mut bob).await;
    n1.faults.fail_next(Op::PresenceSetCallState);
    let refusal = n1
        .rooms
        .set_call_state(&a, change(r#"{"muted":true}"#), sender)
        .await
        .expect_err("presence failed");
    assert_eq!(refusal.code, ErrorCode::Unavailable);
    assert!(bob.saw().is_empty());
    assert_eq!(
        fleet.seat(&a.peer).await.expect("ann's seat").state,
        CallState::default()
    );
}

#[tokio::test]
async fn a_late_joiner_on_another_node_reads_each_members_state_in_joined() {
    let fleet = Fleet::new();
    let (n1, n2) = (fleet.node("n1"), fleet.node("n2"));
    let (mut ann, mut bob, mut cat) = (Client::new("a1"), Client::new("b1"), Client::new("c1"));
    let (a, b, _token) = ann_and_bob(&n1, &mut ann, &mut bob).await;
    n1.rooms
        .set_call_state(&a, change(r#"{"muted":true,"cameraOff":true}"#), sender)
        .await
        .expect("taken");
    n1.rooms
        .set_call_state(&b, change(r#"{"sharing":true,"hand":true}"#), sender)
        .await
        .expect("taken");

    n2.join(&cat, "Cat").await.expect("cat joins");
    assert_eq!(
        member_states(&cat.received()),
        [
            (
                a.peer.to_string(),
                state(r#"{"muted":true,"cameraOff":true}"#)
            ),
            (b.peer.to_string(), state(r#"{"hand":true,"sharing":true}"#)),
        ]
    );
}

#[tokio::test]
async fn a_buffer_lost_with_redis_makes_the_replay_incomplete_and_numbering_goes_on() {
    let fleet = Fleet::new();
    let n1 = fleet.node("n1");
    let (mut ann, mut bob, mut again) = (Client::new("a1"), Client::new("b1"), Client::new("a2"));
    let (a, b, token, stream, last) = ann_processed_one_offer(&n1, &mut ann, &mut bob).await;
    n1.rooms
        .park(a.clone(), LeaveReason::Disconnected, last)
        .await;
    n1.offer(&b, &a.peer, "lost").await.expect("relayed");
    // Redis restarted empty; the resync wrote each seat's last seq back.
    fleet.store.streams().lose_buffers();
    n1.offer(&b, &a.peer, "after the restart")
        .await
        .expect("relayed");
    n1.resume_after(&again, &token, Some((last, &stream)))
        .await
        .expect("resumes");
    let (replay, frames) = resumed_with(&mut again);
    assert_eq!(replay, Some(Replay::Incomplete), "offer `lost` is gone");
    assert_eq!(frames, [(last + 2, offer(&b, "after the restart"))]);
}

#[tokio::test]
async fn a_chat_message_in_the_history_the_buffer_and_the_held_frames_reaches_the_seat_once() {
    let fleet = Fleet::new();
    let (n1, n2) = (fleet.node("n1"), fleet.node("n2"));
    let (mut ann, mut bob, mut again) = (Client::new("a1"), Client::new("b1"), Client::new("a2"));
    let (a, b, token, stream, last) = ann_processed_one_offer(&n1, &mut ann, &mut bob).await;
    n1.rooms
        .park(a.clone(), LeaveReason::Disconnected, last)
        .await;
    // Said while the resume is subscribed and pending, before its history and
    // buffer are read: kept in both, and held in the pending seat too.
    let gate = n2.faults.hold_next(Op::PresenceResume);
    let resuming = {
        let rooms = Arc::clone(&n2.rooms);
        let (conn, handle) = (again.conn.clone(), again.handle.clone());
        let (token, stream) = (token.clone(), stream.clone());
        tokio::spawn(async move {
            let request = ResumeRequest {
                id: None,
                token: &token,
                last_seq: Some(last),
                stream: Some(&stream),
            };
            rooms.resume(request, &conn, handle).await
        })
    };
    gate.reached().await;
    n1.rooms.chat(&b, "once only", sender).await.expect("chat");
    gate.open();
    finished(resuming).await.expect("resumes");
    let outs: Vec<Outbound> = std::iter::from_fn(|| again.outbox.try_recv()).collect();
    let messages: Vec<ServerMessage> = outs
        .iter()
        .map(|out| serde_json::from_str(&out.text).expect("a server message"))
        .collect();
    match messages.as_slice() {
        [ServerMessage::Resumed {
            seat,
            replay: Some(Replay::Complete),
            ..
        }] => assert_eq!(seat.chat.len(), 1, "the history has it"),
        other => panic!("resumed with the chat in its history, nothing else: {other:?}"),
    }
    // Its number is used up: the next frame comes after it.
    n1.offer(&b, &a.peer, "next").await.expect("relayed");
    assert_eq!(again.numbered(), [(Some(last + 2), offer(&b, "next"))]);
}

#[tokio::test]
async fn a_resumer_reads_the_state_it_missed_and_keeps_its_own() {
    let fleet = Fleet::new();
    let (n1, n2) = (fleet.node("n1"), fleet.node("n2"));
    let (mut ann, mut bob, mut again, mut cat) = (
        Client::new("a1"),
        Client::new("b1"),
        Client::new("a2"),
        Client::new("c1"),
    );
    let (a, b, token) = ann_and_bob(&n1, &mut ann, &mut bob).await;
    n1.rooms
        .set_call_state(&a, change(r#"{"hand":true}"#), sender)
        .await
        .expect("taken");
    n1.rooms.park(a.clone(), LeaveReason::Disconnected, 0).await;
    // Bob changes his state while Ann's socket is gone: she is not told.
    n1.rooms
        .set_call_state(&b, change(r#"{"muted":true,"sharing":true}"#), sender)
        .await
        .expect("taken");
    assert!(peer_states(&ann.received()).is_empty());

    n2.resume(&again, &token).await.expect("ann resumes");
    assert_eq!(
        member_states(&again.received()),
        [(
            b.peer.to_string(),
            state(r#"{"muted":true,"sharing":true}"#)
        )]
    );
    // Her own hand stayed up through the resume, for whoever comes next.
    n2.join(&cat, "Cat").await.expect("cat joins");
    assert_eq!(
        member_states(&cat.received()),
        [
            (a.peer.to_string(), state(r#"{"hand":true}"#)),
            (
                b.peer.to_string(),
                state(r#"{"muted":true,"sharing":true}"#)
            ),
        ]
    );
}

/// Waits until `client` was sent `n` frames, and returns them with their `seq`.
async fn numbered_frames(client: &mut Client, n: usize) -> Vec<(Option<u64>, String)> {
    let mut frames = Vec::new();
    while frames.len() < n {
        let out = tokio::time::timeout(Duration::from_secs(5), next_frame(&client.outbox))
            .await
            .unwrap_or_else(|_| panic!("only {frames:?} arrived"))
            .expect("not evicted");
        frames.push(numbered(&out));
    }
    frames
}

#[tokio::test]
async fn while_the_bus_is_away_a_node_relays_between_its_own_seats_and_keeps_the_rest_in_order() {
    let fleet = Fleet::new();
    let (n1, n2) = (fleet.node("n1"), fleet.node("n2"));
    let (mut ann, mut bob, mut cat) = (Client::new("a1"), Client::new("b1"), Client::new("c1"));
    let a = n1.join(&ann, "Ann").await.expect("ann joins");
    let b = n1.join(&bob, "Bob").await.expect("bob joins");
    let c = n2.join(&cat, "Cat").await.expect("cat joins");
    ann.saw();
    bob.saw();
    cat.saw();

    n1.faults.set_bus_down(true);
    // Bob is on Ann's node: handed over at once, without a number.
    n1.offer(&a, &b.peer, "to bob").await.expect("handed over");
    assert_eq!(bob.numbered(), [(None, offer(&a, "to bob"))]);
    // Cat is on the other node: kept, not refused, and nothing reaches her yet.
    for sdp in ["one", "two", "three"] {
        n1.offer(&a, &c.peer, sdp).await.expect("kept for the bus");
    }
    n1.rooms
        .chat(&a, "still here?", sender)
        .await
        .expect("chat kept");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        cat.saw().is_empty(),
        "nothing crosses while the bus is away"
    );

    n1.faults.set_bus_down(false);
    let frames = numbered_frames(&mut cat, 4).await;
    let lines: Vec<&str> = frames.iter().map(|(_, l)| l.as_str()).collect();
    assert_eq!(
        lines[..3],
        [offer(&a, "one"), offer(&a, "two"), offer(&a, "three")],
        "in the order sent"
    );
    assert!(lines[3].starts_with("chat"), "then the chat: {lines:?}");
    let seqs: Vec<u64> = frames
        .iter()
        .map(|(seq, _)| seq.expect("numbered"))
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "numbered in order: {seqs:?}"
    );
    // Bob got the chat too, once the bus took it; nothing was refused to Ann.
    assert_eq!(bob.numbered().len(), 1);
    assert!(ann.saw().is_empty(), "Ann was told of no refusal");
    // The bus takes new messages directly again.
    n1.offer(&a, &c.peer, "four").await.expect("relayed");
    assert_eq!(numbered_frames(&mut cat, 1).await[0].1, offer(&a, "four"));
}

#[tokio::test]
async fn a_full_outage_queue_refuses_at_once_and_one_that_waits_too_long_tells_its_sender() {
    let mut settings = Settings::default();
    settings.outage.queue_messages = 1;
    settings.outage.max_wait = Duration::from_secs(1);
    let fleet = Fleet::with(settings);
    let (n1, n2) = (fleet.node("n1"), fleet.node("n2"));
    let (mut ann, mut cat) = (Client::new("a1"), Client::new("c1"));
    let a = n1.join(&ann, "Ann").await.expect("ann joins");
    let c = n2.join(&cat, "Cat").await.expect("cat joins");
    ann.saw();
    cat.saw();

    n1.faults.set_bus_down(true);
    let kept = || Sender {
        handle: ann.handle.clone(),
        id: Some(RequestId::Number(7)),
        what: "offer",
    };
    n1.rooms
        .relay(&a, c.peer.as_str(), RelayKind::Offer, "{}".to_owned(), kept)
        .await
        .expect("the first is kept");
    let refused = n1.offer(&a, &c.peer, "no room").await.expect_err("full");
    assert_eq!(refused.code, ErrorCode::Unavailable);

    // Past `outage.max_wait` the kept one is dropped and Ann hears of it, by id.
    let told = tokio::time::timeout(Duration::from_secs(5), next_frame(&ann.outbox))
        .await
        .expect("Ann is told")
        .expect("not evicted");
    match serde_json::from_str::<ServerMessage>(&told.text).expect("a server message") {
        ServerMessage::Error { code, id, .. } => {
            assert_eq!(code, ErrorCode::Unavailable);
            assert_eq!(id, Some(RequestId::Number(7)));
        }
        other => panic!("expected an error, got {other:?}"),
    }
    n1.faults.set_bus_down(false);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(cat.saw().is_empty(), "the dropped one never arrives");
}
