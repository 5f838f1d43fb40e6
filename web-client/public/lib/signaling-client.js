// A client for the Video Caller signaling protocol (docs/protocol.md), version 1,
// revision 4 (room-wide chat, reactions, and each member's call state: a raised
// hand, a muted microphone, a camera turned off, a shared screen; sequenced
// delivery; signaling through a Redis outage, with a late refusal of a message
// the node kept). It also talks to revision-2 and -3 nodes: a revision-2 node
// keeps only the hand of the call state and does not number frames.
//
// It owns one WebSocket to a node at a time and keeps the session alive across
// drops: it reconnects with exponential backoff, takes its seat back with
// `resume`, joins again when the seat is gone, and moves to another node without a
// gap when its node drains. It checks its socket itself with `ping` (a page cannot
// see WebSocket ping frames), so that a socket on a network that went away is
// noticed in seconds rather than when TCP gives up. It has no DOM dependency: pass
// a WebSocket constructor to run it outside a browser.
//
// What it sends to peers and to the room (offer, answer, candidate, app-data,
// chat, call-state, reaction) carries a request id, so that a refusal names the
// message it answers. A message the node refuses for now (`unavailable`: its bus
// is down; `draining`) is kept and sent again, in the order first sent; what
// comes later for the same target (a peer, or the room) queues behind it, and a
// newer state (`call-state`, an app-data sent with `{state: true}`) replaces a
// held older one. It goes again after a backoff, at once when a later message is
// known to have got through, and after a resume. The first retry is one message
// followed by a `ping`: its `pong` proves the node took it (the node answers in
// order), and only then does the rest follow. A message still refused 30 s after
// it was first sent, or past 200 held, is given up: `undelivered` tells the page.
// `delivery` tells whether the node refuses now, so that a page can say so
// rather than "connected".
//
// Every frame the node sends from the room carries a `seq`, increasing on the
// seat's stream. The client drops a frame whose `seq` is not above the highest
// it has handed on (a duplicate), acknowledges that highest one with `ack` on
// every message it sends (its `ping` included), and names it in `resume` as
// `lastSeq` with the stream's id, so that the node replays exactly what was
// missed. `resumed.replay` is `complete` when it could, `incomplete` when it
// could not: then the page must renegotiate its peer connections.

import { HeldMessages, ROOM_TARGET } from './held-messages.js';

export const PROTOCOL_VERSION = 1;

/** Close code telling the node to keep the seat for a resume. */
export const CLOSE_RECONNECTING = 4000;
/** Close code telling the node the person is gone: the seat is freed at once. */
export const CLOSE_NORMAL = 1000;

export const ConnectionState = Object.freeze({
  IDLE: 'idle',
  CONNECTING: 'connecting',
  CONNECTED: 'connected',
  RECONNECTING: 'reconnecting',
  CLOSED: 'closed',
});

export const DEFAULT_BACKOFF = Object.freeze({ initialMs: 250, maxMs: 5000, factor: 2, jitter: 0.2 });

/** How often the socket is checked with `ping`, and how long a check waits for a sign of life. */
export const DEFAULT_LIVENESS = Object.freeze({ intervalMs: 5000, timeoutMs: 3000 });

/** Error codes after which a request is retried on a new socket rather than failed. */
const TRANSIENT_CODES = new Set(['disconnected', 'timeout', 'draining', 'unavailable', 'internal']);

/** Messages queued while the socket is down; older ones are dropped past this. */
const OUTBOX_LIMIT = 500;

/** Refusals after which a message is kept and sent again: the node cannot deliver for now. */
const REFUSED_FOR_NOW = new Set(['unavailable', 'draining']);

/**
 * How refused messages are sent again: the wait before the next try (doubling
 * from `initialMs` up to `maxMs`), and when they are given up: first sent more
 * than `maxAgeMs` ago, or more than `maxHeld` of them.
 */
export const DEFAULT_REDELIVERY = Object.freeze({ initialMs: 500, maxMs: 4000, maxAgeMs: 30_000, maxHeld: 200 });

/** Sent messages remembered for a refusal that may still come; older ones count as taken. */
const SENT_MEMORY = 1000;

/** How long sends in a burst wait for the one `ping` that confirms them all. */
const CONFIRM_DELAY_MS = 50;

const RELAY_TYPES = ['offer', 'answer', 'candidate', 'app-data'];

/** Messages the node delivers from another member to the whole room. */
const ROOM_TYPES = ['chat', 'reaction'];

/** What is kept and sent again when refused: what goes to peers and to the whole room. */
const REDELIVERED_TYPES = new Set([...RELAY_TYPES, ...ROOM_TYPES, 'call-state']);

/**
 * The fields of a call state (protocol revision 3; revision 2 knows `hand`
 * only): in `members` each is present while true, in `peer-state` all are.
 */
export const CALL_STATE_FIELDS = Object.freeze(['hand', 'muted', 'cameraOff', 'sharing']);

/** The whole call state `from` describes: each field a boolean, absent ones false. */
export function callStateOf(from) {
  return Object.fromEntries(CALL_STATE_FIELDS.map((field) => [field, from?.[field] === true]));
}

/** The reactions the node relays (protocol revision 2). */
export const REACTIONS = Object.freeze(['👍', '👏', '😂', '😮', '❤️', '🎉']);

export class SignalingError extends Error {
  /**
   * @param {string} code a protocol error code, or `disconnected`, `timeout`, `closed`
   * @param {string} message
   * @param {string|number} [requestId]
   */
  constructor(code, message, requestId) {
    super(message);
    this.name = 'SignalingError';
    this.code = code;
    this.requestId = requestId;
  }

  /** Whether the same request may succeed on another socket or a bit later. */
  get transient() {
    return TRANSIENT_CODES.has(this.code);
  }
}

/**
 * Delay before reconnect attempt number `attempt` (0 for the first retry):
 * exponential, capped, and spread by ±jitter so that a fleet of clients dropped by
 * the same node does not come back in lockstep.
 */
export function backoffDelay(attempt, backoff = DEFAULT_BACKOFF, random = Math.random) {
  const { initialMs, maxMs, factor, jitter } = { ...DEFAULT_BACKOFF, ...backoff };
  const base = Math.min(maxMs, initialMs * factor ** attempt);
  const spread = base * jitter;
  return Math.round(base - spread + random() * 2 * spread);
}

/** The `/ws` URL of the node that served a page at `location`. */
export function signalingUrlFor(location) {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/ws`;
}

function deferred() {
  const result = { settled: false };
  result.promise = new Promise((resolve, reject) => {
    result.resolve = (value) => {
      result.settled = true;
      resolve(value);
    };
    result.reject = (error) => {
      result.settled = true;
      reject(error);
    };
  });
  return result;
}

const SOCKET_OPEN = 1;

/**
 * One WebSocket and what the client knows of it: its welcome, its requests in
 * flight, and a promise settled when it closes.
 */
class Link {
  /**
   * @param {WebSocket} socket
   * @param {() => number} acked the highest `seq` handed on, put on every message as `ack`
   */
  constructor(socket, acked = () => 0) {
    this.socket = socket;
    this.acked = acked;
    this.welcome = null;
    this.pending = new Map();
    this.closed = deferred();
    /**
     * This socket's pings, so that an older node's `unknown-type` reply is not
     * reported: id to the count of sends before it, which its reply proves taken.
     */
    this.pings = new Map();
    /** The liveness check waiting for a sign of life, if any; any frame ends it. */
    this.probeTimer = null;
  }

  get isOpen() {
    return this.socket.readyState === SOCKET_OPEN && !this.closed.settled;
  }

  send(message) {
    const ack = this.acked();
    this.socket.send(JSON.stringify(ack > 0 ? { ...message, ack } : message));
  }

  close(code, reason) {
    if (!this.closed.settled) this.socket.close(code, reason);
  }
}

export class SignalingClient {
  #url;
  #WebSocket;
  #backoff;
  #requestTimeoutMs;
  #liveness;
  #livenessTimer = null;
  #random;
  #listeners = new Map();

  #state = ConnectionState.IDLE;
  #wantOpen = false;
  #everConnected = false;
  #connectedOnce = deferred();
  #link = null;
  #liveLinks = new Set();
  #attempt = 0;
  #retryTimer = null;
  #retryWake = null;
  #nextRequestId = 1;

  // A drain handover in progress: the task, and the socket it is resuming on.
  #handoverTask = null;
  #handoverLink = null;
  #holdOutgoing = false;

  #session = null;
  /** This side's call state as last set (null: never), for `setCallState`. */
  #callState = null;
  /** The close event of the last socket in use that ended, for the next `resumed`. */
  #lastLoss = null;
  #joinRequest = null;
  /** What waits for a socket: {message, target, stateKey, since} (target null: not redelivered). */
  #outbox = [];

  #redelivery;
  #held;
  /** Messages sent and not yet known taken or refused, by id: {entry, link, sendNo}. */
  #sent = new Map();
  /**
   * The last messages sent, by id, known taken or not: a node that kept one
   * through a Redis outage may still refuse it later (`unavailable` after a
   * `pong`), and the refusal then finds it here.
   */
  #recent = new Map();
  #sends = 0;
  /** The one message sent again as a test of the node, and the `ping` behind it. */
  #probe = null;
  #redeliveryTimer = null;
  #redeliveryAttempt = 0;
  #confirmTimer = null;
  /** Whether the node's last word on a message was a refusal for now. */
  #refused = false;
  /** The last `delivery` told, so that only changes are. */
  #lastDelivery = null;

  /**
   * @param {string} url the node's WebSocket URL, e.g. `wss://call.example.org/ws`
   * @param {object} [options]
   * @param {typeof WebSocket} [options.WebSocket] constructor to use (default: the global one)
   * @param {{initialMs?: number, maxMs?: number, factor?: number, jitter?: number}} [options.backoff]
   * @param {number} [options.requestTimeoutMs] a request unanswered this long counts the socket as dead
   * @param {{intervalMs?: number, timeoutMs?: number}} [options.liveness] how often to `ping` the
   *   node while connected (0: only when {@link checkNow} asks), and how long a check waits for any
   *   frame before the socket is dropped and the session resumed on a new one
   * @param {{initialMs?: number, maxMs?: number, maxAgeMs?: number, maxHeld?: number}} [options.redelivery]
   *   when refused messages are sent again and given up (see {@link DEFAULT_REDELIVERY})
   * @param {() => number} [options.random] source of jitter, for tests
   */
  constructor(url, options = {}) {
    this.#url = url;
    this.#WebSocket = options.WebSocket ?? globalThis.WebSocket;
    if (typeof this.#WebSocket !== 'function') {
      throw new TypeError('SignalingClient needs a WebSocket constructor (options.WebSocket)');
    }
    this.#backoff = { ...DEFAULT_BACKOFF, ...options.backoff };
    this.#requestTimeoutMs = options.requestTimeoutMs ?? 10_000;
    this.#liveness = { ...DEFAULT_LIVENESS, ...options.liveness };
    this.#random = options.random ?? Math.random;
    this.#redelivery = { ...DEFAULT_REDELIVERY, ...options.redelivery };
    this.#held = new HeldMessages(this.#redelivery);
    // A rejected connect() that nobody awaits must not crash the host.
    this.#connectedOnce.promise.catch(() => {});
  }

  /** One of {@link ConnectionState}. */
  get state() {
    return this.#state;
  }

  /** The id of the node the client is connected to, from its `welcome`. */
  get node() {
    return this.#link?.welcome?.node ?? null;
  }

  /**
   * What the node knows of the protocol's additions: 2 and above has chat, raised
   * hands and reactions; 0 for a node older than the field.
   */
  get revision() {
    return this.#link?.welcome?.revision ?? 0;
  }

  /** Longest chat text the node takes, in bytes of UTF-8. */
  get maxChatBytes() {
    return this.#link?.welcome?.maxChatBytes ?? 0;
  }

  /** This client's peer id while in a room, else null. */
  get peerId() {
    return this.#session?.peer ?? null;
  }

  get room() {
    return this.#session?.room ?? null;
  }

  /** The other members of the room, oldest first, as last known. */
  get members() {
    return this.#session ? [...this.#session.members.values()] : [];
  }

  /** ICE servers from the last `joined` or `resumed`, for RTCPeerConnection. */
  get iceServers() {
    return this.#session?.iceServers ?? [];
  }

  /**
   * Whether what this client sends gets through: `state` is `refused` from a
   * refusal for now until a message is known taken again, else `ok`; `held` is
   * how many refused messages wait to be sent again.
   */
  get delivery() {
    return { state: this.#refused ? 'refused' : 'ok', held: this.#held.size };
  }

  /**
   * Subscribes to an event; returns a function that unsubscribes. Events:
   * - `state` {state, attempt?, retryInMs?}
   * - `welcome`, `joined`: the node's messages
   * - `resumed`: the node's message plus `cleanClose`, whether the socket it
   *   replaces ended with a close handshake; false when that socket went silent
   *   (the liveness check gave up on it) or broke, as a network change does, so
   *   that the media paths of the same network may be gone too. Its `replay` is
   *   `complete` when every frame missed follows it, `incomplete` when the node
   *   could not replay them all: the page must then restart ICE on every peer
   *   connection and send its call state again
   * - `rejoined`: the seat was lost and a new one taken (`joined` plus
   *   `previousPeer`); every peer connection must start over
   * - `session-lost` {error, previousPeer}: the seat was lost and joining again failed
   * - `peer-joined`, `peer-left`, `offer`, `answer`, `candidate`, `app-data`
   * - `chat`, `reaction`, `peer-state`: what members say to the whole room
   * - `reconnect`: the node drains; the client moves by itself
   * - `delivery` {state, held}: see {@link delivery}; on every change
   * - `undelivered` {message, requestId, code, reason}: a message given up, `reason`
   *   `expired` (refused for longer than the age bound) or `overflow` (too many
   *   waiting); `code` is the last refusal (`disconnected` for the outbox)
   * - `error`: a SignalingError not tied to a request of this client; refusals for
   *   now of messages this client sends again are not reported here
   */
  on(type, listener) {
    if (!this.#listeners.has(type)) this.#listeners.set(type, new Set());
    this.#listeners.get(type).add(listener);
    return () => this.#listeners.get(type)?.delete(listener);
  }

  #emit(type, detail) {
    for (const listener of [...(this.#listeners.get(type) ?? [])]) {
      try {
        listener(detail);
      } catch (err) {
        // A faulty listener must not break the protocol state machine; report it apart.
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }

  #setState(state, retry) {
    if (this.#state === state && !retry) return;
    this.#state = state;
    this.#emit('state', { state, ...retry });
  }

  /**
   * Opens the connection and keeps it open until {@link close}. Resolves with the
   * node's `welcome` once the first socket is up, retrying with backoff until then
   * (`state` events tell when the node is unreachable).
   */
  connect() {
    if (this.#state === ConnectionState.CLOSED) {
      return Promise.reject(new SignalingError('closed', 'the client was closed'));
    }
    if (!this.#wantOpen) {
      this.#wantOpen = true;
      this.#run();
    }
    return this.#connectedOnce.promise;
  }

  /**
   * Joins a room. Resolves with `joined`; rejects with a SignalingError carrying the
   * node's code (`room-full`, `auth-invalid`, ...). A drop while waiting is no
   * failure: the join goes out again on the next socket.
   */
  join({ room, name, token } = {}) {
    if (this.#state === ConnectionState.CLOSED) {
      return Promise.reject(new SignalingError('closed', 'the client was closed'));
    }
    if (this.#session || this.#joinRequest) {
      return Promise.reject(new SignalingError('already-joined', 'already in a room or joining one'));
    }
    const request = { params: { room, name, token }, result: deferred(), inFlight: false };
    this.#joinRequest = request;
    // A new seat starts with every field of its call state false.
    this.#callState = null;
    if (!this.#wantOpen) this.connect();
    else if (this.#state === ConnectionState.CONNECTED) this.#sendJoin(this.#link);
    return request.result.promise;
  }

  /** Leaves the room; the socket stays open for another join. */
  async leave() {
    const session = this.#session;
    this.#session = null;
    this.#outbox = [];
    this.#forgetRedelivery();
    this.#joinRequest?.result.reject(new SignalingError('closed', 'left before the join completed'));
    this.#joinRequest = null;
    if (!session || this.#state !== ConnectionState.CONNECTED) return;
    try {
      await this.#request(this.#link, { type: 'leave' });
    } catch (err) {
      // Gone either way: without a socket the node frees the seat when its window ends.
      if (!(err instanceof SignalingError)) throw err;
    }
  }

  /** Leaves the room if in one and closes for good; the node frees the seat at once. */
  async close() {
    if (this.#state === ConnectionState.CLOSED) return;
    if (this.#session) await this.leave();
    this.#wantOpen = false;
    this.#joinRequest?.result.reject(new SignalingError('closed', 'the client was closed'));
    this.#joinRequest = null;
    this.#connectedOnce.reject(new SignalingError('closed', 'the client was closed'));
    clearTimeout(this.#retryTimer);
    this.#retryWake?.();
    this.#forgetRedelivery();
    this.#stopLiveness();
    for (const link of this.#liveLinks) link.close(CLOSE_NORMAL, 'bye');
    this.#setState(ConnectionState.CLOSED);
  }

  /**
   * Checks now whether the socket still carries anything: sends `ping`, and if no
   * frame at all arrives within the liveness timeout, drops the socket and resumes
   * on a new one. Between sockets, ends the backoff wait instead. Call it when the
   * network may have changed (`online`, `offline`, a connection `change`, a peer
   * connection's ICE going `disconnected`); calls while a check is waiting add
   * nothing.
   */
  checkNow() {
    if (this.#retryWake) {
      clearTimeout(this.#retryTimer);
      this.#retryWake();
      return;
    }
    const link = this.#link;
    if (this.#state !== ConnectionState.CONNECTED || !link?.isOpen || link.probeTimer) return;
    const id = this.#nextRequestId++;
    link.pings.set(id, this.#sends);
    link.probeTimer = setTimeout(() => {
      link.probeTimer = null;
      this.#abandon(link, 'no pong');
    }, this.#liveness.timeoutMs);
    link.send({ type: 'ping', id });
  }

  /**
   * Calls {@link checkNow} on the network events of a browser: `online` and
   * `offline` on `target` (a window), `change` on `connection` (navigator.connection,
   * where the browser has it). Returns a function that stops listening.
   */
  watchNetwork(target = globalThis, connection = globalThis.navigator?.connection) {
    const check = () => this.checkNow();
    const sources = [
      [target, 'online'],
      [target, 'offline'],
      [connection, 'change'],
    ].filter(([source]) => typeof source?.addEventListener === 'function');
    for (const [source, type] of sources) source.addEventListener(type, check);
    return () => {
      for (const [source, type] of sources) source.removeEventListener(type, check);
    };
  }

  #startLiveness() {
    this.#stopLiveness();
    if (!(this.#liveness.intervalMs > 0)) return;
    this.#livenessTimer = setInterval(() => this.checkNow(), this.#liveness.intervalMs);
    // Outside a browser (Node), a client left open must not keep the process alive.
    this.#livenessTimer?.unref?.();
  }

  #stopLiveness() {
    clearInterval(this.#livenessTimer);
    this.#livenessTimer = null;
  }

  // Gives up on a socket believed dead. A browser closing a socket whose network is
  // gone waits for the node's close frame, up to a minute, before its `close`
  // event: the link ends now instead, and the late event changes nothing.
  #abandon(link, reason) {
    link.close(CLOSE_RECONNECTING, reason);
    link.end?.({ code: CLOSE_RECONNECTING, reason, wasClean: false });
  }

  /**
   * Tries again at once instead of waiting out the backoff, or drops a socket that
   * is believed dead (the browser went offline and online again).
   */
  reconnectNow() {
    if (this.#retryWake) {
      clearTimeout(this.#retryTimer);
      this.#retryWake();
    } else if (this.#state === ConnectionState.CONNECTED) {
      this.#abandon(this.#link, 'reconnecting');
    }
  }

  // The relays return their request id, as the room-wide messages do.

  sendOffer(to, sdp) {
    return this.#sendInSession({ type: 'offer', to, sdp });
  }

  sendAnswer(to, sdp) {
    return this.#sendInSession({ type: 'answer', to, sdp });
  }

  /** `candidate` is an RTCIceCandidateInit, or null for the end of candidates. */
  sendCandidate(to, candidate) {
    return this.#sendInSession({ type: 'candidate', to, candidate: candidate ?? null });
  }

  /**
   * `data` is any JSON value. With `state: true` it is this side's whole state for
   * that peer: held for a retry, a newer one replaces it.
   */
  sendAppData(to, data, { state = false } = {}) {
    return this.#sendInSession({ type: 'app-data', to, data }, { state });
  }

  /** Sends a call-quality summary: {final, iceConnectedMs, outcome, candidateType, rttMs}. */
  sendReport(report) {
    this.#sendInSession({ type: 'report', report });
  }

  /**
   * Takes back the messages of `type` for peer `to` that wait in the outbox (sent
   * while the socket was down) or to be sent again (refused), and returns how many.
   * A listener of `resumed` calls it for what the gap made stale, before the
   * outbox goes out.
   */
  discardQueued(to, type) {
    const stale = ({ message }) => message.to === to && message.type === type;
    const before = this.#outbox.length;
    this.#outbox = this.#outbox.filter((entry) => !stale(entry));
    const discarded = before - this.#outbox.length + this.#held.discard(stale);
    if (discarded) this.#emitDelivery();
    return discarded;
  }

  /**
   * Says `text` to the whole room. Returns the request id: a refusal (`chat-too-long`,
   * `broadcast-rate-limited`, ...) comes back as an `error` event carrying it as
   * `requestId`; silence means the node took it.
   */
  sendChat(text) {
    return this.#sendRoomWide({ type: 'chat', text });
  }

  /**
   * This side's call state, for the whole room to see and the node to keep with
   * the seat: `change` names any of {@link CALL_STATE_FIELDS}; the others keep
   * what was last set here (false at first). The message carries the whole state,
   * so that a newer one held for a retry replaces an older one without losing a
   * field, and a revision-2 node, which needs `hand`, takes it too. Returns the
   * request id.
   */
  setCallState(change = {}) {
    const next = callStateOf(this.#callState);
    for (const field of CALL_STATE_FIELDS) {
      if (typeof change[field] === 'boolean') next[field] = change[field];
    }
    this.#callState = next;
    return this.#sendRoomWide({ type: 'call-state', ...next });
  }

  /** The call state this side last set, every field a boolean. */
  get callState() {
    return callStateOf(this.#callState);
  }

  /** A passing reaction, one of {@link REACTIONS}. */
  sendReaction(emoji) {
    return this.#sendRoomWide({ type: 'reaction', emoji });
  }

  #sendRoomWide(message) {
    return this.#sendInSession(message, { state: message.type === 'call-state' });
  }

  // Returns the request id of what is redelivered, else undefined.
  #sendInSession(message, { state = false } = {}) {
    if (!this.#session) {
      throw new SignalingError('not-joined', `cannot send ${message.type} outside a room`);
    }
    const entry = { message, target: null, stateKey: null, since: Date.now() };
    if (REDELIVERED_TYPES.has(message.type)) {
      entry.message = { ...message, id: this.#nextRequestId++ };
      entry.target = message.to ?? ROOM_TARGET;
      entry.stateKey = state ? `${message.type}:${entry.target}` : null;
    }
    if (entry.target !== null && this.#held.holds(entry.target)) {
      // Behind what waits for the same target, so that the peer sees the order sent.
      this.#hold(entry);
    } else if (this.#canSend()) {
      this.#transmit(entry);
    } else {
      // Kept for the resumed session: the peers' negotiations go on meanwhile.
      this.#outbox.push(entry);
      if (this.#outbox.length > OUTBOX_LIMIT) this.#giveUp([this.#outbox.shift()], 'overflow');
    }
    return entry.message.id;
  }

  #canSend() {
    return this.#state === ConnectionState.CONNECTED && !this.#holdOutgoing && Boolean(this.#link?.isOpen);
  }

  #flushOutbox() {
    const queued = this.#outbox;
    this.#outbox = [];
    if (!this.#session) return;
    for (const entry of queued) {
      if (entry.target !== null && this.#held.holds(entry.target)) this.#hold(entry);
      else this.#transmit(entry);
    }
    this.#redeliver();
  }

  #transmit(entry, link = this.#link) {
    link.send(entry.message);
    if (entry.target === null) return;
    this.#sends += 1;
    const id = entry.message.id;
    this.#sent.delete(id);
    this.#sent.set(id, { entry, link, sendNo: this.#sends });
    // Long taken or refused by now: a refusal comes back within a round trip.
    if (this.#sent.size > SENT_MEMORY) this.#sent.delete(this.#sent.keys().next().value);
    this.#recent.delete(id);
    this.#recent.set(id, entry);
    if (this.#recent.size > SENT_MEMORY) this.#recent.delete(this.#recent.keys().next().value);
    if (this.#refused) this.#confirmSoon();
  }

  // While the node refuses, a `ping` after what was sent tells soon whether it got through.
  #confirmSoon() {
    if (this.#confirmTimer) return;
    this.#confirmTimer = setTimeout(() => {
      this.#confirmTimer = null;
      if (this.#canSend()) this.#ping(this.#link);
    }, CONFIRM_DELAY_MS);
    this.#confirmTimer?.unref?.();
  }

  #ping(link) {
    const id = this.#nextRequestId++;
    link.pings.set(id, this.#sends);
    link.send({ type: 'ping', id });
    return id;
  }

  #hold(entry) {
    this.#giveUp(this.#held.hold(entry), 'overflow');
    this.#emitDelivery();
  }

  #giveUp(entries, reason) {
    for (const { message, target, code } of entries) {
      if (target === null) continue;
      this.#emit('undelivered', { message, requestId: message.id, code: code ?? 'disconnected', reason });
    }
  }

  #emitDelivery() {
    const delivery = this.delivery;
    const last = this.#lastDelivery;
    if (last && last.state === delivery.state && last.held === delivery.held) return;
    this.#lastDelivery = delivery;
    this.#emit('delivery', delivery);
  }

  // The node refused `entry` for now: keep it, and try again after a backoff.
  #refusedForNow(entry, code) {
    entry.code = code;
    if (this.#probe?.entry === entry) this.#probe = null;
    this.#refused = true;
    this.#hold(entry);
    this.#scheduleRedelivery();
  }

  #scheduleRedelivery() {
    if (this.#redeliveryTimer || this.#held.size === 0) return;
    const { initialMs, maxMs } = this.#redelivery;
    const delay = backoffDelay(this.#redeliveryAttempt, { initialMs, maxMs, factor: 2, jitter: 0.2 }, this.#random);
    this.#redeliveryAttempt += 1;
    this.#redeliveryTimer = setTimeout(() => {
      this.#redeliveryTimer = null;
      this.#redeliver();
    }, delay);
    this.#redeliveryTimer?.unref?.();
  }

  // Sends the oldest held message and a `ping` behind it; the rest follows the `pong`.
  #redeliver() {
    clearTimeout(this.#redeliveryTimer);
    this.#redeliveryTimer = null;
    this.#giveUp(this.#held.expire(Date.now(), this.#redelivery.maxAgeMs), 'expired');
    this.#emitDelivery();
    if (this.#held.size === 0 || this.#probe || !this.#session || !this.#canSend()) return;
    const entry = this.#held.shift();
    const link = this.#link;
    this.#transmit(entry, link);
    this.#probe = { entry, link, pingId: this.#ping(link) };
    this.#emitDelivery();
  }

  // A `pong` (or an older node's refusal of `ping`): the node has read everything
  // sent before the `ping`, and would have refused it by now.
  #onPong(link, id) {
    const sendsBefore = link.pings.get(id);
    link.pings.delete(id);
    let taken = 0;
    for (const [sentId, sent] of this.#sent) {
      if (sent.link !== link || sent.sendNo > sendsBefore) continue;
      this.#sent.delete(sentId);
      taken += 1;
    }
    if (this.#probe?.pingId === id) {
      this.#probe = null;
      this.#redeliveryAttempt = 0;
      for (const entry of this.#held.takeAll()) this.#transmit(entry, link);
    }
    if (!taken) return;
    if (this.#held.size > 0) {
      this.#redeliver();
    } else if (this.#refused && ![...this.#sent.values()].some((sent) => sent.link === link)) {
      // Nothing refused waits and nothing sent is in doubt: the node delivers again.
      this.#refused = false;
      this.#redeliveryAttempt = 0;
    }
    this.#emitDelivery();
  }

  // What was sent on a socket that ended is in doubt: it is not sent again, but a
  // message being tried again is, since it was refused once already.
  #forgetLink(link) {
    for (const [id, sent] of this.#sent) if (sent.link === link) this.#sent.delete(id);
    if (this.#probe?.link === link) {
      this.#giveUp(this.#held.hold(this.#probe.entry), 'overflow');
      this.#probe = null;
    }
  }

  #forgetRedelivery() {
    this.#held.takeAll();
    this.#sent.clear();
    this.#recent.clear();
    this.#probe = null;
    clearTimeout(this.#redeliveryTimer);
    this.#redeliveryTimer = null;
    clearTimeout(this.#confirmTimer);
    this.#confirmTimer = null;
    this.#redeliveryAttempt = 0;
    this.#refused = false;
    this.#emitDelivery();
  }

  // The connection loop: one turn per socket, until close().
  async #run() {
    while (this.#wantOpen) {
      try {
        const link = await this.#open();
        this.#link = link;
        if (this.#session) await this.#restoreSession(link);
        this.#attempt = 0;
        this.#everConnected = true;
        this.#setState(ConnectionState.CONNECTED);
        this.#connectedOnce.resolve(link.welcome);
        this.#flushOutbox();
        if (this.#joinRequest) this.#sendJoin(link);
        this.#startLiveness();
        this.#lastLoss = await this.#untilCurrentLinkEnds();
        this.#stopLiveness();
      } catch (err) {
        if (!(err instanceof SignalingError)) throw err;
      }
      if (!this.#wantOpen) break;
      await this.#waitBeforeRetry();
    }
  }

  async #waitBeforeRetry() {
    const retryInMs = backoffDelay(this.#attempt, this.#backoff, this.#random);
    this.#attempt += 1;
    const state = this.#everConnected ? ConnectionState.RECONNECTING : ConnectionState.CONNECTING;
    this.#setState(state, { attempt: this.#attempt, retryInMs });
    await new Promise((resolve) => {
      this.#retryWake = resolve;
      this.#retryTimer = setTimeout(resolve, retryInMs);
    });
    this.#retryWake = null;
  }

  // Waits until the socket in use closes. A drain handover swaps the socket during
  // this wait: the loop then goes on with the new one, or reconnects if the old
  // socket closed before the handover could finish and the handover failed.
  async #untilCurrentLinkEnds() {
    for (;;) {
      const link = this.#link;
      const event = await link.closed.promise;
      if (this.#link !== link) continue;
      if (this.#handoverTask) {
        this.#setState(ConnectionState.RECONNECTING);
        if (await this.#handoverTask) continue;
      }
      return event;
    }
  }

  /** Opens a socket and resolves with its Link once the node's `welcome` arrived. */
  #open() {
    if (this.#state === ConnectionState.IDLE) this.#setState(ConnectionState.CONNECTING);
    const link = new Link(new this.#WebSocket(this.#url), () => this.#session?.lastSeq ?? 0);
    this.#liveLinks.add(link);
    const welcomed = deferred();
    const welcomeTimer = setTimeout(() => {
      welcomed.reject(new SignalingError('timeout', 'the node sent no welcome'));
      this.#abandon(link, 'no welcome');
    }, this.#requestTimeoutMs);

    link.socket.onmessage = (event) => {
      if (link.closed.settled) return;
      clearTimeout(link.probeTimer);
      link.probeTimer = null;
      const message = parseFrame(event.data);
      if (!message) return;
      if (message.type === 'welcome' && !link.welcome) {
        clearTimeout(welcomeTimer);
        link.welcome = message;
        this.#emit('welcome', message);
        welcomed.resolve(link);
        return;
      }
      this.#onMessage(link, message);
    };
    link.end = (event) => {
      if (link.closed.settled) return;
      clearTimeout(welcomeTimer);
      clearTimeout(link.probeTimer);
      const error = new SignalingError('disconnected', `the socket closed (code ${event?.code ?? 'none'})`);
      this.#liveLinks.delete(link);
      this.#forgetLink(link);
      link.closed.resolve(event);
      for (const request of link.pending.values()) {
        clearTimeout(request.timer);
        request.reject(error);
      }
      link.pending.clear();
      welcomed.reject(error);
    };
    link.socket.onclose = (event) => link.end(event);
    link.socket.onerror = () => {
      // A close event follows every error; the work is done there.
    };
    return welcomed.promise;
  }

  #onMessage(link, message) {
    if (link !== this.#link && link !== this.#handoverLink) return;
    if (Number.isSafeInteger(message.seq) && this.#session) {
      // Already handed on (a replayed frame that also came live): once only.
      if (message.seq <= this.#session.lastSeq) return;
      this.#session.lastSeq = message.seq;
    }
    if (message.id !== undefined && link.pings.has(message.id)) {
      // `pong`, or `unknown-type` from a node older than `ping`: alive either way.
      this.#onPong(link, message.id);
      return;
    }
    if (message.id !== undefined && link.pending.has(message.id)) {
      const request = link.pending.get(message.id);
      link.pending.delete(message.id);
      clearTimeout(request.timer);
      if (message.type === 'error') {
        request.reject(new SignalingError(message.code, message.message, message.id));
      } else {
        request.resolve(message);
      }
      return;
    }
    switch (message.type) {
      case 'error': {
        const sent = message.id === undefined ? undefined : this.#sent.get(message.id);
        if (sent) this.#sent.delete(message.id);
        if (sent && this.#session && REFUSED_FOR_NOW.has(message.code)) {
          this.#refusedForNow(sent.entry, message.code);
          break;
        }
        // Refused after it was known taken: the node kept it through an outage
        // and could not deliver it. Held again (given up at once if too old).
        const kept = sent || message.id === undefined ? undefined : this.#recent.get(message.id);
        if (kept && this.#session && REFUSED_FOR_NOW.has(message.code)) {
          this.#recent.delete(message.id);
          this.#refusedForNow(kept, message.code);
          break;
        }
        if (sent && this.#probe?.entry === sent.entry) {
          // Refused for good (the peer left, say): the next one is the test now.
          this.#probe = null;
          queueMicrotask(() => this.#redeliver());
        }
        this.#emit('error', new SignalingError(message.code, message.message, message.id));
        break;
      }
      case 'peer-joined':
        this.#session?.members.set(message.peer.id, message.peer);
        this.#emit('peer-joined', message);
        break;
      case 'peer-left':
        this.#session?.members.delete(message.peer);
        // The node would refuse them now: the peer is gone.
        if (this.#held.discard(({ target }) => target === message.peer)) this.#emitDelivery();
        this.#emit('peer-left', message);
        break;
      case 'peer-state': {
        // The whole state: what the member had before no longer matters.
        const member = this.#session?.members.get(message.peer);
        if (member) Object.assign(member, callStateOf(message));
        this.#emit('peer-state', message);
        break;
      }
      case 'reconnect':
        this.#emit('reconnect', message);
        if (link === this.#link) this.#startHandover();
        break;
      default:
        if (RELAY_TYPES.includes(message.type) || ROOM_TYPES.includes(message.type)) this.#emit(message.type, message);
      // Any other type is from a newer revision of the protocol: ignored.
    }
  }

  #request(link, message) {
    const id = this.#nextRequestId++;
    if (link.closed.settled) {
      return Promise.reject(new SignalingError('disconnected', 'the socket is closed', id));
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        link.pending.delete(id);
        reject(new SignalingError('timeout', `no reply to ${message.type}`, id));
        // An unanswered request means a socket dead in a way TCP has not noticed yet.
        this.#abandon(link, 'request timed out');
      }, this.#requestTimeoutMs);
      link.pending.set(id, { resolve, reject, timer });
      link.send({ ...message, id });
    });
  }

  async #sendJoin(link) {
    const request = this.#joinRequest;
    if (!request || request.inFlight) return;
    request.inFlight = true;
    try {
      const joined = await this.#request(link, joinMessage(request.params));
      if (this.#joinRequest !== request) return;
      this.#joinRequest = null;
      this.#adoptSession(joined, request.params);
      request.result.resolve(joined);
      this.#emit('joined', joined);
    } catch (err) {
      request.inFlight = false;
      if (this.#joinRequest !== request) return;
      if (err.transient) {
        // Sent again by the loop once the next socket is up.
        if (err.code !== 'disconnected') link.close(CLOSE_RECONNECTING, err.code);
        return;
      }
      this.#joinRequest = null;
      request.result.reject(err);
    }
  }

  #adoptSession(reply, params) {
    // A resume goes on with the same stream; a join starts a new one.
    const previous = this.#session;
    const sameStream = reply.type === 'resumed' && previous && reply.stream && reply.stream === previous.stream;
    this.#session = {
      stream: reply.stream,
      lastSeq: sameStream ? previous.lastSeq : 0,
      params,
      room: reply.room,
      peer: reply.peer,
      name: reply.name,
      resumeToken: reply.resumeToken,
      resumeWindowMs: reply.resumeWindowMs,
      iceServers: reply.iceServers ?? [],
      members: new Map((reply.members ?? []).map((member) => [member.id, member])),
    };
  }

  // On a fresh socket after a drop: take the seat back, or a new one if it is gone.
  // Transient failures throw, so that the loop tries again on another socket.
  async #restoreSession(link) {
    const session = this.#session;
    try {
      const resumed = await this.#request(link, resumeMessage(session));
      this.#adoptSession(resumed, session.params);
      this.#emit('resumed', { ...resumed, cleanClose: this.#lastLoss?.wasClean === true });
      return;
    } catch (err) {
      if (err.transient) {
        if (err.code !== 'disconnected') link.close(CLOSE_RECONNECTING, err.code);
        throw err;
      }
      // resume-failed, or a refusal of the token itself: either way the seat is gone.
    }
    // What was queued belongs to negotiations of the old peer id.
    this.#outbox = [];
    this.#forgetRedelivery();
    try {
      const joined = await this.#request(link, joinMessage(session.params));
      this.#adoptSession(joined, session.params);
      this.#emit('rejoined', { ...joined, previousPeer: session.peer });
    } catch (err) {
      if (err.transient) {
        if (err.code !== 'disconnected') link.close(CLOSE_RECONNECTING, err.code);
        throw err;
      }
      this.#session = null;
      this.#emit('session-lost', { error: err, previousPeer: session.peer });
    }
  }

  // The node drains: open a second socket (the load balancer picks a node that is
  // not draining), resume there, and only then let go of the first one.
  #startHandover() {
    if (this.#handoverTask || !this.#session) return;
    this.#handoverTask = this.#handOver().finally(() => {
      this.#handoverTask = null;
      this.#handoverLink = null;
      this.#holdOutgoing = false;
    });
  }

  async #handOver() {
    for (let attempt = 0; this.#wantOpen && this.#session; attempt += 1) {
      let link = null;
      try {
        link = await this.#open();
        this.#handoverLink = link;
        // From here the node may move the seat at any moment: send nothing on the old socket.
        this.#holdOutgoing = true;
        const resumed = await this.#request(link, resumeMessage(this.#session));
        const previous = this.#link;
        this.#adoptSession(resumed, this.#session.params);
        this.#link = link;
        previous.close(CLOSE_RECONNECTING, 'moved to another node');
        this.#setState(ConnectionState.CONNECTED);
        // Listeners see `resumed` while sends are still held, as after a drop: they
        // may take back what waits in the outbox, and what they send queues behind it.
        // The old socket was fine: the node asked the client to move.
        this.#emit('resumed', { ...resumed, cleanClose: true });
        this.#holdOutgoing = false;
        this.#flushOutbox();
        return true;
      } catch (err) {
        if (!(err instanceof SignalingError)) throw err;
        link?.close(CLOSE_NORMAL, 'handover failed');
        this.#handoverLink = null;
        this.#holdOutgoing = false;
        if (this.#state === ConnectionState.CONNECTED && this.#link?.isOpen) this.#flushOutbox();
        // Past the window the main loop joins again once the old socket is gone.
        if (err.code === 'resume-failed') return false;
        await new Promise((resolve) => setTimeout(resolve, backoffDelay(attempt, this.#backoff, this.#random)));
      }
    }
    return false;
  }
}

function parseFrame(data) {
  if (typeof data !== 'string') return null;
  try {
    const message = JSON.parse(data);
    return message && typeof message.type === 'string' ? message : null;
  } catch {
    return null;
  }
}

function joinMessage({ room, name, token }) {
  return { type: 'join', room, name, ...(token ? { token } : {}), protocol: PROTOCOL_VERSION };
}

function resumeMessage(session) {
  const replay = session.stream ? { lastSeq: session.lastSeq, stream: session.stream } : {};
  return { type: 'resume', token: session.resumeToken, protocol: PROTOCOL_VERSION, ...replay };
}
