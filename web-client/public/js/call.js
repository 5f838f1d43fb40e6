// A call in one room: the signaling session, one PeerLink per remote peer, and
// the local media they send. Knows nothing of the DOM; the UI listens to it.
//
// Events (CustomEvent, data in `detail`):
// - `signaling` {state, retryInMs, refused, mediaFlowing}: the socket's state
//   (connected, reconnecting, ...), whether the node refuses what this side sends
//   for now (its bus is down: the library sends it again later), and whether
//   media flows with any peer; see `connection`
// - `peer-added` {link, arrived}: `arrived` when the peer just entered the room
// - `peer-changed` {link}, `peer-removed` {peerId, name, reason}
// - `stats` {peerId, summary}: every STATS_INTERVAL_MS per connected peer
// - `rejoined`: the seat was lost and taken again; every peer starts over
// - `chat` {message}: a chat message to show (the history at join, then each new
//   one, own ones included); `chat-failed` {message, code}: an own one was refused
// - `hand` {peerId, name, hand, failed?}: someone's hand went up or down (`local`
//   for this side; `failed` when this side's change did not reach the others)
// - `state-undelivered` {peerId, name}: this side's mute/camera/screen state did
//   not reach a peer (peerId null: the room) in time; it is sent again, and
//   reaches them once the node delivers again
// - `reaction` {peerId, emoji}: a passing reaction (`local` for this side's own)
// - `ended` {reason, error?}: `left`, or `lost` when the room could not be re-entered
//
// This side's call state (hand, mute, camera, screen) goes to the room as
// `call-state`, the whole of it each time, and again after every resume or
// rejoin; the node keeps it with the seat, so each peer's state comes from
// `members` (join, resume) and `peer-state`. A revision-2 node keeps only the
// hand: there mute, camera and screen go to each peer as app-data, as before.

import { REACTIONS, SignalingClient, callStateOf } from '../lib/signaling-client.js';
import { callReport, summarize, takeSnapshot } from './call-stats.js';
import { PeerLink } from './peer-link.js';
import { safetyCodeOf } from './safety-code.js';

const STATS_INTERVAL_MS = 2000;
const REPORT_INTERVAL_MS = 10_000;
/** Chat messages a page keeps; the node keeps fewer for late joiners. */
const CHAT_LIMIT = 200;
/** After `broadcast-rate-limited`, the call state goes again this much later (the bucket refills at 2 a second). */
const STATE_RETRY_MS = 1000;

/** What a tile shows of a peer's media ({audio, video, screen}), from its call state. */
export function mediaOfCallState(state) {
  const { muted, cameraOff, sharing } = callStateOf(state);
  return { audio: !muted, video: !cameraOff, screen: sharing };
}

/** Bytes of UTF-8 in `text`, as the node counts them. */
export function utf8Length(text) {
  return new TextEncoder().encode(text).length;
}

/** Per-peer video send cap by mesh size: every peer gets its own copy of our video. */
function videoBitrateCap(remotePeers) {
  if (remotePeers <= 1) return 2_500_000;
  if (remotePeers <= 3) return 900_000;
  return 500_000;
}

export class Call extends EventTarget {
  #client;
  #media;
  #relayOnly;
  #params;
  #links = new Map();
  #summaries = new Map();
  #snapshots = new Map();
  #earlyAppData = new Map();
  #safetyCodes = new Map();
  #timers = [];
  #unsubscribers = [];
  #onMediaChange = () => this.#localMediaChanged();
  #ended = false;
  #displayName;
  #chat = [];
  #ownChat = new Map();
  #handRaised = false;
  /** The request id of the last call-state that changed the hand, and of the last one sent. */
  #handRequest = null;
  #stateRequest = null;
  #stateRetryTimer = null;
  /** Whether this side changed its hand since joining: then a resume says it again (revision 2). */
  #handChanged = false;
  /** Each peer's hand as last shown, so that a state told again is no news. */
  #shownHands = new Map();
  #signalingState = { state: 'idle' };
  #connectionTold = null;
  /** Peers already told (by a notice) that a state did not reach them, until delivery is back. */
  #undeliveredTold = new Set();

  /**
   * @param {object} options
   * @param {string} options.signalingUrl
   * @param {string} options.room
   * @param {string} options.name
   * @param {string} [options.token] a join token, when the node requires one
   * @param {import('./local-media.js').LocalMedia} options.media
   * @param {boolean} [options.relayOnly]
   */
  constructor({ signalingUrl, room, name, token, media, relayOnly = false }) {
    super();
    this.#client = new SignalingClient(signalingUrl);
    this.#media = media;
    this.#relayOnly = relayOnly;
    this.#params = { room, name, token };
    this.#displayName = name;
  }

  get client() {
    return this.#client;
  }

  get peerId() {
    return this.#client.peerId;
  }

  /** The name the others see: the node may take it from the join token. */
  get displayName() {
    return this.#displayName;
  }

  /** Remote peers by id. */
  get links() {
    return this.#links;
  }

  #emit(type, detail = {}) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  /**
   * Connects and joins. Rejects with the node's SignalingError (`room-full`,
   * `auth-*`, ...) when the room cannot be entered.
   */
  async join() {
    const client = this.#client;
    const on = (type, handler) => this.#unsubscribers.push(client.on(type, handler));
    on('state', (detail) => {
      this.#signalingState = detail;
      this.#emitConnection();
    });
    on('delivery', ({ state }) => {
      if (state === 'ok') this.#undeliveredTold.clear();
      this.#emitConnection();
    });
    on('undelivered', (detail) => this.#onUndelivered(detail));
    on('peer-joined', ({ peer }) => this.#addPeer(peer.id, peer.name, { arrived: true }));
    on('peer-left', ({ peer, reason }) => this.#removePeer(peer, reason));
    on('offer', (message) => this.#linkFrom(message).handleDescription({ type: 'offer', sdp: message.sdp }));
    on('answer', (message) => this.#links.get(message.from)?.handleDescription({ type: 'answer', sdp: message.sdp }));
    on('candidate', (message) => this.#links.get(message.from)?.handleCandidate(message.candidate));
    on('app-data', (message) => this.#onAppData(message));
    on('resumed', (message) => this.#onResumed(message));
    on('rejoined', (message) => this.#onRejoined(message));
    on('session-lost', ({ error }) => this.#end('lost', error));
    on('chat', (message) => this.#addChat(message));
    on('peer-state', (message) => this.#onPeerState(message));
    on('reaction', ({ from, emoji }) => {
      if (this.#links.has(from)) this.#emit('reaction', { peerId: from, emoji });
    });
    on('error', (error) => this.#onError(error));

    try {
      const joined = await client.join(this.#params);
      this.#displayName = joined.name ?? this.#displayName;
      this.#mergeHistory(joined.chat);
    } catch (err) {
      this.#detach();
      await client.close();
      throw err;
    }
    this.#media.addEventListener('change', this.#onMediaChange);
    for (const member of client.members) this.#addPeer(member.id, member.name);
    // The seat starts with every field false: say what differs (a muted lobby).
    if (this.callStates && Object.values(this.#ownCallState()).some(Boolean)) this.#sendCallState();
    this.#timers.push(setInterval(() => this.#sampleStats(), STATS_INTERVAL_MS));
    this.#timers.push(setInterval(() => this.#sendReports(false), REPORT_INTERVAL_MS));
  }

  /** Hangs up: final reports, `leave`, and the socket closed so the seat frees at once. */
  async leave() {
    if (this.#ended) return;
    await Promise.all([...this.#links.values()].map((link) => this.#sendFinalReport(link)));
    this.#closeAllLinks({ reported: true });
    await this.#client.close();
    this.#end('left');
  }

  /** For a page being unloaded: says goodbye without waiting for replies. */
  leaveNow() {
    if (this.#ended) return;
    this.#closeAllLinks();
    this.#client.close();
    this.#end('left');
  }

  #end(reason, error) {
    if (this.#ended) return;
    this.#ended = true;
    this.#closeAllLinks();
    this.#detach();
    // After a lost session the socket is still open, and of no use any more.
    this.#client.close();
    this.#emit('ended', { reason, error });
  }

  #detach() {
    clearTimeout(this.#stateRetryTimer);
    for (const timer of this.#timers) clearInterval(timer);
    this.#timers = [];
    for (const unsubscribe of this.#unsubscribers) unsubscribe();
    this.#unsubscribers = [];
    this.#media.removeEventListener('change', this.#onMediaChange);
  }

  // Final reports from the last stats sample, unless already sent with fresh ones.
  #closeAllLinks({ reported = false } = {}) {
    if (!reported) this.#sendReports(true);
    for (const link of [...this.#links.values()]) {
      link.close();
      this.#links.delete(link.peerId);
      this.#forgetStats(link.peerId);
      this.#emit('peer-removed', { peerId: link.peerId, name: link.name, reason: 'ended' });
    }
  }

  #forgetStats(peerId) {
    this.#summaries.delete(peerId);
    this.#snapshots.delete(peerId);
    this.#safetyCodes.delete(peerId);
  }

  /**
   * What the status line shows: the socket's `state` (and `retryInMs` while it
   * waits to reconnect), whether the node `refused` this side's last messages for
   * now, and whether media is flowing with any peer meanwhile (`mediaFlowing`).
   */
  get connection() {
    return {
      ...this.#signalingState,
      refused: this.#client.delivery.state === 'refused',
      mediaFlowing: [...this.#links.values()].some((link) => link.connectionState === 'connected'),
    };
  }

  // Told only when it changed: peer state changes come often and mostly change nothing here.
  #emitConnection() {
    const connection = this.connection;
    const key = JSON.stringify(connection);
    if (key === this.#connectionTold) return;
    this.#connectionTold = key;
    this.#emit('signaling', connection);
  }

  /** Whether the node has chat, raised hands and reactions (protocol revision 2). */
  get roomMessages() {
    return this.#client.revision >= 2;
  }

  /** Whether the node keeps mute, camera and screen with the seat (protocol revision 3). */
  get callStates() {
    return this.#client.revision >= 3;
  }

  /** Longest chat message the node takes, in bytes of UTF-8. */
  get maxChatBytes() {
    return this.#client.maxChatBytes || 2000;
  }

  /** The chat so far, oldest first: {messageId, from, name, text, at, own, failed}. */
  get chat() {
    return this.#chat;
  }

  get handRaised() {
    return this.#handRaised;
  }

  /** Whether `peerId`'s hand is up, as the node last said. */
  handOf(peerId) {
    return Boolean(this.#client.members.find((member) => member.id === peerId)?.hand);
  }

  /**
   * Says `text` to everyone in the call. Returns the message as shown, or throws a
   * RangeError for a text the node would refuse (empty, too long).
   */
  sendChat(text) {
    const trimmed = text.normalize('NFC').trim();
    if (!trimmed) throw new RangeError('empty');
    if (utf8Length(trimmed) > this.maxChatBytes) throw new RangeError('too-long');
    const requestId = this.#client.sendChat(trimmed);
    const message = {
      messageId: `own-${requestId}`,
      from: this.peerId,
      name: this.#displayName,
      text: trimmed,
      at: Date.now(),
      own: true,
      failed: false,
    };
    this.#ownChat.set(requestId, message);
    this.#pushChat(message);
    return message;
  }

  /** Raises or lowers this side's hand for everyone. */
  setHand(hand) {
    this.#handRaised = Boolean(hand);
    this.#handChanged = true;
    this.#sendCallState({ handChanged: true });
    this.#emit('hand', { peerId: 'local', name: this.#displayName, hand: this.#handRaised });
  }

  /** This side's whole call state, as the others are to see it. */
  #ownCallState() {
    const { audio, video, screen } = this.#media.state;
    return { hand: this.#handRaised, muted: !audio, cameraOff: !video, sharing: Boolean(screen) };
  }

  // The whole state each time: the node keeps it with the seat and tells the
  // others. A revision-2 node takes the hand from it and ignores the rest.
  #sendCallState({ handChanged = false } = {}) {
    clearTimeout(this.#stateRetryTimer);
    this.#stateRetryTimer = null;
    try {
      this.#stateRequest = this.#client.setCallState(this.#ownCallState());
      if (handChanged) this.#handRequest = this.#stateRequest;
    } catch (err) {
      if (err?.name !== 'SignalingError') throw err;
    }
  }

  /** A passing reaction for everyone; shown on this side at once. */
  sendReaction(emoji) {
    if (!REACTIONS.includes(emoji)) throw new RangeError(`not a reaction: ${emoji}`);
    this.#client.sendReaction(emoji);
    this.#emit('reaction', { peerId: 'local', emoji });
  }

  #pushChat(message) {
    this.#chat.push(message);
    if (this.#chat.length > CHAT_LIMIT) this.#chat.splice(0, this.#chat.length - CHAT_LIMIT);
    this.#emit('chat', { message });
  }

  #addChat({ messageId, from, name, text, at }) {
    if (this.#chat.some((message) => message.messageId === messageId)) return;
    this.#pushChat({ messageId, from, name, text, at, own: false, failed: false });
  }

  // A history (at join, resume or rejoin) may hold messages this page already
  // shows, its own among them under the id the page gave them.
  #mergeHistory(entries = [], ownPeers = [this.peerId]) {
    for (const entry of entries ?? []) {
      if (this.#chat.some((message) => message.messageId === entry.messageId)) continue;
      const mine = ownPeers.includes(entry.from)
        ? this.#chat.find((message) => message.own && message.messageId.startsWith('own-') && message.text === entry.text)
        : null;
      if (mine) {
        mine.messageId = entry.messageId;
        continue;
      }
      this.#addChat(entry);
    }
  }

  #onPeerState(message) {
    const peerId = message.peer;
    const link = this.#links.get(peerId);
    if (!link) return;
    if (this.callStates) link.setRemoteState(mediaOfCallState(message));
    this.#emit('peer-changed', { link });
    // A peer says its state again after a reconnect: news only when it changed.
    const raised = message.hand === true;
    if (this.#shownHands.get(peerId) === raised) return;
    this.#shownHands.set(peerId, raised);
    this.#emit('hand', { peerId, name: link.name, hand: raised });
  }

  #onError(error) {
    if (!this.#ownRequestFailed(error.requestId, error.code)) console.warn('signaling:', error.code, error.message);
  }

  // An own chat message or call state that did not go out; false for anything else.
  #ownRequestFailed(requestId, code) {
    const own = this.#ownChat.get(requestId);
    if (own) {
      this.#ownChat.delete(requestId);
      own.failed = true;
      this.#emit('chat-failed', { message: own, code });
      return true;
    }
    if (requestId === undefined || (requestId !== this.#stateRequest && requestId !== this.#handRequest)) return false;
    // Each call-state carries the whole state: a later one makes an earlier failure moot.
    if (this.callStates && requestId !== this.#stateRequest) return true;
    if (this.callStates && code === 'broadcast-rate-limited') {
      // Too many room-wide messages at once: the latest whole state goes a moment later.
      clearTimeout(this.#stateRetryTimer);
      this.#stateRetryTimer = setTimeout(() => this.#sendCallState(), STATE_RETRY_MS);
      return true;
    }
    if (requestId === this.#handRequest) {
      // Not changed after all: show what the others see.
      this.#handRaised = !this.#handRaised;
      this.#handRequest = null;
      this.#emit('hand', { peerId: 'local', name: this.#displayName, hand: this.#handRaised, failed: code });
    }
    return true;
  }

  // The library gave a message up: the node refused it for too long.
  #onUndelivered({ message, requestId, code }) {
    if (message.type === 'call-state' && this.callStates) {
      const latest = requestId === this.#stateRequest;
      this.#ownRequestFailed(requestId, code);
      if (!latest) return;
      // The others must end up seeing this side's state: say so once, and keep trying.
      if (!this.#undeliveredTold.has(null)) {
        this.#undeliveredTold.add(null);
        this.#emit('state-undelivered', { peerId: null, name: 'The others' });
      }
      this.#sendCallState();
      return;
    }
    if (this.#ownRequestFailed(requestId, code)) return;
    if (message.type !== 'app-data') return;
    const link = this.#links.get(message.to);
    if (!link) return;
    // The peer must end up seeing this side's state: say so once, and keep trying.
    if (!this.#undeliveredTold.has(link.peerId)) {
      this.#undeliveredTold.add(link.peerId);
      this.#emit('state-undelivered', { peerId: link.peerId, name: link.name });
    }
    this.#sendLocalState(link.peerId);
  }

  /** The safety code of the connection to `peerId`, once negotiated; see safety-code.js. */
  safetyCode(peerId) {
    return this.#safetyCodes.get(peerId) ?? null;
  }

  // Every negotiation may bring new certificates (a rejoin makes a new connection).
  async #updateSafetyCode(link) {
    const code = await safetyCodeOf(link.pc).catch(() => null);
    if (this.#links.get(link.peerId) !== link || !code || code === this.#safetyCodes.get(link.peerId)) return;
    this.#safetyCodes.set(link.peerId, code);
    this.#emit('peer-changed', { link });
  }

  #addPeer(peerId, name, { arrived = false } = {}) {
    const member = this.#client.members.find((m) => m.id === peerId);
    const existing = this.#links.get(peerId);
    if (existing) {
      existing.name = name;
      if (this.callStates && member) existing.setRemoteState(mediaOfCallState(member));
      this.#emit('peer-changed', { link: existing });
      return existing;
    }
    const self = this.#client.peerId;
    // The lower id makes the first offer; the other side is the polite one.
    const initiator = self < peerId;
    const link = new PeerLink({
      peerId,
      name,
      polite: !initiator,
      initiator,
      signaling: this.#client,
      iceServers: this.#client.iceServers,
      relayOnly: this.#relayOnly,
      media: this.#media,
    });
    this.#links.set(peerId, link);
    this.#shownHands.set(peerId, this.handOf(peerId));
    link.addEventListener('state', () => {
      this.#emit('peer-changed', { link });
      this.#emitConnection();
    });
    link.addEventListener('remote-state', () => this.#emit('peer-changed', { link }));
    // Media stopped flowing: the signaling socket may be on the same dead network.
    link.addEventListener('ice-disconnected', () => this.#client.checkNow());
    link.addEventListener('negotiated', () => {
      link.setVideoBitrateCap(videoBitrateCap(this.#links.size));
      this.#updateSafetyCode(link);
    });
    const early = this.#earlyAppData.get(peerId);
    if (early) {
      link.setRemoteState(early);
      this.#earlyAppData.delete(peerId);
    }
    if (this.callStates && member) link.setRemoteState(mediaOfCallState(member));
    this.#emit('peer-added', { link, arrived });
    link.start();
    // The node tells each peer the others' state; a revision-2 node does not.
    if (!this.callStates) this.#sendLocalState(peerId, { askBack: true });
    this.#capBitrates();
    return link;
  }

  // An offer can come before `peer-joined` when the two travel different paths
  // between nodes; the name follows with `peer-joined`.
  #linkFrom({ from }) {
    return this.#links.get(from) ?? this.#addPeer(from, this.#memberName(from));
  }

  #memberName(peerId) {
    return this.#client.members.find((member) => member.id === peerId)?.name ?? 'Guest';
  }

  async #removePeer(peerId, reason) {
    const link = this.#links.get(peerId);
    this.#earlyAppData.delete(peerId);
    if (!link) return;
    this.#links.delete(peerId);
    this.#shownHands.delete(peerId);
    this.#emit('peer-removed', { peerId, name: link.name, reason });
    this.#capBitrates();
    await this.#sendFinalReport(link);
    link.close();
    // Unless the same peer came back meanwhile (a resume that raced its peer-left).
    if (!this.#links.has(peerId)) this.#forgetStats(peerId);
  }

  #capBitrates() {
    const cap = videoBitrateCap(this.#links.size);
    for (const link of this.#links.values()) link.setVideoBitrateCap(cap);
  }

  #onAppData({ from, data }) {
    const link = this.#links.get(from);
    if (!link) {
      this.#earlyAppData.set(from, data);
      return;
    }
    link.setRemoteState(data);
    // A page on a revision-2 node asks; it learns this side's state no other way.
    if (data?.askBack) this.#sendLocalState(from);
  }

  #sendLocalState(peerId, extra = {}) {
    try {
      this.#client.sendAppData(peerId, { ...this.#media.state, ...extra }, { state: true });
    } catch (err) {
      if (err?.name !== 'SignalingError') throw err;
    }
  }

  #localMediaChanged() {
    for (const [peerId, link] of this.#links) {
      link.updateLocalTracks();
      if (!this.callStates) this.#sendLocalState(peerId);
    }
    if (this.callStates) this.#sendCallState();
  }

  // Back on signaling as the same peer. The room may have changed meanwhile, and
  // messages addressed to this side may have been lost: catch up on both. A socket
  // that went silent or broke (not closed by the node) says the network may have
  // changed under this side: the media paths may be dead too, though ICE does not
  // say so yet, so every connection restarts ICE at once. So does an incomplete
  // replay: the node could not give back everything the peers sent meanwhile (an
  // offer, candidates), so every negotiation starts again from this side.
  #onResumed({ members, iceServers, cleanClose, chat, replay }) {
    const renegotiate = !cleanClose || replay === 'incomplete';
    this.#mergeHistory(chat);
    const present = new Set(members.map((member) => member.id));
    for (const peerId of [...this.#links.keys()]) {
      if (!present.has(peerId)) this.#removePeer(peerId, 'left');
    }
    for (const member of members) {
      const link = this.#links.get(member.id);
      if (!link) {
        this.#addPeer(member.id, member.name);
        continue;
      }
      link.setIceServers(iceServers ?? []);
      link.recoverAfterSignalingGap({ networkMayHaveChanged: renegotiate });
      if (this.callStates) {
        // What changed while this side was away, peer-state messages it missed included.
        this.#onPeerState({ peer: member.id, ...callStateOf(member) });
      } else {
        this.#sendLocalState(member.id, { askBack: true });
      }
    }
    // The seat keeps the state, but a change sent just before the socket went may
    // not have reached the node: the whole state goes again.
    if (this.callStates) this.#sendCallState({ handChanged: this.#handChanged });
    else if (this.#handChanged && this.roomMessages) this.#sendCallState({ handChanged: true });
  }

  // A new peer id: the others see a new peer, so every connection starts over.
  // The new seat's state starts all false: say it again where it differs.
  #onRejoined({ chat, previousPeer }) {
    this.#closeAllLinks();
    for (const member of this.#client.members) this.#addPeer(member.id, member.name);
    this.#mergeHistory(chat, [this.peerId, previousPeer]);
    const differs = this.callStates ? Object.values(this.#ownCallState()).some(Boolean) : this.#handRaised;
    if (differs) this.#sendCallState({ handChanged: this.#handRaised });
    this.#emit('rejoined');
  }

  async #sampleStats() {
    await Promise.all(
      [...this.#links.values()].map(async (link) => {
        if (link.connectionState === 'closed' || link.connectionState === 'new') return;
        const snapshot = await takeSnapshot(link.pc).catch(() => null);
        if (!snapshot || this.#links.get(link.peerId) !== link) return;
        const summary = summarize(snapshot, this.#snapshots.get(link.peerId));
        this.#snapshots.set(link.peerId, snapshot);
        this.#summaries.set(link.peerId, summary);
        this.#emit('stats', { peerId: link.peerId, summary });
      }),
    );
  }

  // The last periodic sample can be seconds old, or missing in a short call.
  async #sendFinalReport(link) {
    const previous = this.#snapshots.get(link.peerId);
    const snapshot = await takeSnapshot(link.pc).catch(() => null);
    this.#sendReport(link, true, snapshot ? summarize(snapshot, previous) : this.#summaries.get(link.peerId));
  }

  #sendReports(final) {
    for (const link of this.#links.values()) this.#sendReport(link, final);
  }

  #sendReport(link, final, summary = this.#summaries.get(link.peerId)) {
    if (!link.negotiationStartedAt) return;
    try {
      this.#client.sendReport(callReport(link, summary, { final }));
    } catch (err) {
      if (err?.name !== 'SignalingError') throw err;
    }
  }
}
