// The call with one remote peer: its RTCPeerConnection, negotiated with the
// "perfect negotiation" pattern so that either side may change things at any time.
//
// - Each side adds what it sends whenever it likes; `negotiationneeded` makes an
//   offer. When both offer at once (glare), the impolite side ignores the other's
//   offer and the polite side rolls its own back and answers.
// - Candidates trickle through signaling as they are found.
// - A connection that stays disconnected restarts ICE; one that fails restarts at
//   once if it was up until then, else after a growing wait (ice-retry.js), with
//   the likely cause in `problem` for the person; an offer left unanswered (its
//   answer was lost while the other side's signaling was down) is rolled back and
//   made again.
//
// Events: `state` (connection or ICE state changed), `remote-state` (the peer's
// microphone/camera/screen state, from its call state, or from app-data on a
// revision-2 node), `negotiated` (an offer/answer exchange
// completed), `ice-disconnected` (ICE went `disconnected` or `failed`: the
// network may have changed under this side, signaling included).

import { candidateType, iceFailureCause, iceRetryDelay } from './ice-retry.js';

/** A brief "disconnected" often heals by itself (a Wi-Fi hiccup); past this, restart ICE. */
const DISCONNECTED_GRACE_MS = 4000;
/** An offer unanswered for this long is taken as lost. */
const ANSWER_TIMEOUT_MS = 8000;

/** What this side sends, each on its own transceiver: [slot, media kind]. */
const SLOTS = [
  ['audio', 'audio'],
  ['video', 'video'],
  ['screen', 'video'],
];

export class PeerLink extends EventTarget {
  #pc;
  #signaling;
  #media;
  #transceivers = { audio: null, video: null, screen: null };
  #makingOffer = false;
  #ignoreOffer = false;
  #settingRemoteAnswer = false;
  #work = Promise.resolve();
  #disconnectedTimer = null;
  #answerTimer = null;
  #retryTimer = null;
  // This attempt's failure is handled (both the ICE and the connection state may say so).
  #failureHandled = false;
  #closed = false;
  #iceServers;
  #localCandidateTypes = new Set();
  // Until the first offer, only the initiator adds transceivers: if both did, each
  // side would end up with two audio and two video m-lines after the glare.
  #awaitingFirstOffer;

  /** The peer's camera and microphone, in one stream for its tile. */
  remoteStream = new MediaStream();
  /** The peer's shared screen: the video of a second video transceiver. */
  screenStream = new MediaStream();
  /** What the peer told us about its microphone, camera and screen. */
  remoteState = { audio: true, video: true, screen: false };
  /** When this side started negotiating, for the time-to-connect report. */
  negotiationStartedAt = null;
  /** Milliseconds from the start of negotiation to the first ICE connection. */
  iceConnectedMs = null;
  everConnected = false;
  iceFailed = false;
  /** ICE failures in a row, with no connection between them. */
  iceFailures = 0;
  /**
   * Why this peer cannot be reached while ICE keeps failing and the next restart
   * waits (`no-relay`, `relay-unreachable`, `unreachable`: see ice-retry.js), else null.
   */
  problem = null;
  /** When the next ICE restart after a failure is due (performance.now()), or null. */
  retryAt = null;
  /** How long the restart after the last failure waited (0: at once), or null before any failure. */
  lastRetryDelayMs = null;
  /** Completed offer/answer exchanges. */
  negotiations = 0;
  /** Offers that crossed one of this side's own (glare). */
  collisions = 0;
  iceRestarts = 0;

  /**
   * @param {object} options
   * @param {string} options.peerId the remote peer
   * @param {string} options.name its display name
   * @param {boolean} options.polite whether this side yields on glare
   * @param {boolean} options.initiator whether this side makes the first offer
   * @param {import('../lib/signaling-client.js').SignalingClient} options.signaling
   * @param {RTCIceServer[]} options.iceServers
   * @param {boolean} options.relayOnly use TURN relays only
   * @param {import('./local-media.js').LocalMedia} options.media what to send
   */
  constructor({ peerId, name, polite, initiator, signaling, iceServers, relayOnly, media }) {
    super();
    this.peerId = peerId;
    this.name = name;
    this.polite = polite;
    this.initiator = initiator;
    this.#awaitingFirstOffer = !initiator;
    this.#signaling = signaling;
    this.#media = media;
    this.#iceServers = iceServers;
    const pc = new RTCPeerConnection({
      iceServers,
      iceTransportPolicy: relayOnly ? 'relay' : 'all',
      bundlePolicy: 'max-bundle',
    });
    this.#pc = pc;
    pc.addEventListener('negotiationneeded', () => this.#offer());
    pc.addEventListener('icecandidate', ({ candidate }) => {
      const type = candidateType(candidate);
      if (type) this.#localCandidateTypes.add(type);
      this.#send(() => this.#signaling.sendCandidate(this.peerId, candidate ? candidate.toJSON() : null));
    });
    pc.addEventListener('track', ({ track, transceiver }) => {
      (this.#isScreen(transceiver) ? this.screenStream : this.remoteStream).addTrack(track);
      this.#emit('state');
    });
    pc.addEventListener('iceconnectionstatechange', () => this.#onIceStateChange());
    pc.addEventListener('connectionstatechange', () => {
      // Chromium leaves ICE "disconnected" when no pair ever worked; the connection
      // says failed. (With ICE up, a failed connection is DTLS's: no path to look for.)
      if (pc.connectionState === 'failed' && !['connected', 'completed'].includes(pc.iceConnectionState)) {
        this.#onIceFailed();
      }
      this.#emit('state');
    });
    pc.addEventListener('signalingstatechange', () => {
      if (pc.signalingState === 'stable') clearTimeout(this.#answerTimer);
    });
  }

  get pc() {
    return this.#pc;
  }

  /** `new`, `connecting`, `connected`, `disconnected`, `failed` or `closed`. */
  get connectionState() {
    return this.#pc.connectionState;
  }

  #emit(type) {
    this.dispatchEvent(new Event(type));
  }

  // Signaling may be between sockets or already gone at hang-up; a lost message is
  // recovered by the answer timeout and ICE restarts, so it must not throw here.
  #send(sendMessage) {
    try {
      sendMessage();
    } catch (err) {
      if (err?.name !== 'SignalingError') throw err;
    }
  }

  // Remote descriptions, candidates and track changes must apply one at a time and
  // in order: a candidate needs the description before it.
  #enqueue(task) {
    this.#work = this.#work.then(async () => {
      if (this.#closed) return;
      try {
        await task();
      } catch (err) {
        if (!this.#closed) console.warn(`peer ${this.peerId}:`, err);
      }
    });
    return this.#work;
  }

  /** Starts the call: the initiator offers; the other side waits for that offer. */
  start() {
    if (!this.initiator) return this.#work;
    this.negotiationStartedAt ??= performance.now();
    return this.#enqueue(() => this.#attachLocalTracks());
  }

  /** After the local camera, microphone or screen changed. */
  updateLocalTracks() {
    return this.#enqueue(async () => {
      if (!this.#awaitingFirstOffer) await this.#attachLocalTracks();
    });
  }

  handleDescription(description) {
    return this.#enqueue(() => this.#onDescription(description));
  }

  handleCandidate(candidate) {
    return this.#enqueue(() => this.#onCandidate(candidate));
  }

  setRemoteState(data) {
    if (!data || typeof data !== 'object') return;
    const next = { ...this.remoteState };
    for (const key of ['audio', 'video', 'screen']) {
      if (typeof data[key] === 'boolean') next[key] = data[key];
    }
    this.remoteState = next;
    this.#emit('remote-state');
  }

  /** New ICE servers (fresh TURN credentials after a resume) for the next gathering. */
  setIceServers(iceServers) {
    this.#iceServers = iceServers;
    this.#pc.setConfiguration({ ...this.#pc.getConfiguration(), iceServers });
  }

  restartIce() {
    if (this.#closed) return;
    clearTimeout(this.#retryTimer);
    this.retryAt = null;
    this.#failureHandled = false;
    this.iceRestarts += 1;
    this.#pc.restartIce();
  }

  /**
   * After this side's signaling came back: messages sent to it meanwhile are lost.
   * An offer waiting for its answer is made again, and a connection that is not up
   * restarts ICE, since candidates may have been lost too. With
   * `networkMayHaveChanged` (the socket went silent or broke) ICE restarts even if
   * it still says connected: a path on a network that is gone looks connected for
   * seconds, and the old path keeps carrying media while the new one is checked.
   * @param {{networkMayHaveChanged?: boolean}} [options]
   */
  recoverAfterSignalingGap({ networkMayHaveChanged = false } = {}) {
    // An offer made while signaling was down still waits in the outbox: it goes
    // now or never, since the one made below replaces it. Were both sent, the
    // answer to the old one would arrive first and be taken for the new one's.
    this.#signaling.discardQueued?.(this.peerId, 'offer');
    return this.#enqueue(async () => {
      const pc = this.#pc;
      // Nothing negotiated yet: the initiator's answer timeout covers a lost first offer.
      if (this.#awaitingFirstOffer) return;
      if (pc.signalingState === 'have-local-offer') {
        await pc.setLocalDescription({ type: 'rollback' });
        this.restartIce();
      } else if (networkMayHaveChanged || !['connected', 'completed'].includes(pc.iceConnectionState)) {
        this.restartIce();
      }
    });
  }

  /** Caps the video this side sends, so that a mesh fits the uplink. */
  setVideoBitrateCap(bitsPerSecond) {
    return this.#enqueue(async () => {
      const sender = this.#transceivers.video?.sender;
      if (!sender) return;
      const parameters = sender.getParameters();
      // Before the first negotiation there is no encoding to cap yet.
      if (!parameters.encodings?.length) return;
      if (parameters.encodings[0].maxBitrate === bitsPerSecond) return;
      parameters.encodings[0].maxBitrate = bitsPerSecond;
      await sender.setParameters(parameters);
    });
  }

  close() {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#disconnectedTimer);
    clearTimeout(this.#answerTimer);
    clearTimeout(this.#retryTimer);
    this.problem = null;
    this.#pc.close();
    this.#emit('state');
  }

  // Puts the local tracks on one audio and one video transceiver. A transceiver
  // that starts sending changes its direction, which triggers a renegotiation;
  // swapping one track for another (camera to screen) does not. Both kinds are set
  // up before the first await, so that one negotiation covers both.
  async #attachLocalTracks() {
    const replacing = [];
    for (const [slot, kind] of SLOTS) {
      const track = { audio: this.#media.audioTrack, video: this.#media.videoTrack, screen: this.#media.screenTrack }[slot];
      // No screen m-line until somebody shares; then both sides use the same one.
      if (slot === 'screen' && !track && !this.#transceivers.screen && !this.#unclaimed(kind)) continue;
      const transceiver = this.#transceiverFor(slot, kind, track);
      if (transceiver.sender.track !== track) replacing.push(transceiver.sender.replaceTrack(track));
      if (track && transceiver.direction !== 'sendrecv') transceiver.direction = 'sendrecv';
    }
    await Promise.all(replacing);
  }

  #transceiverFor(slot, kind, track) {
    const known = this.#transceivers[slot];
    if (known && !known.stopped) return known;
    // Answering an offer: reuse the transceiver it created rather than add one.
    const transceiver =
      this.#unclaimed(kind) ?? this.#pc.addTransceiver(track ?? kind, { direction: track ? 'sendrecv' : 'recvonly' });
    this.#transceivers[slot] = transceiver;
    return transceiver;
  }

  #unclaimed(kind) {
    return this.#pc
      .getTransceivers()
      .find((t) => !t.stopped && t.receiver.track.kind === kind && !Object.values(this.#transceivers).includes(t));
  }

  // The camera is the first video m-line (the initiator adds it at the start);
  // a later one carries a shared screen.
  #isScreen(transceiver) {
    if (transceiver.receiver.track.kind !== 'video') return false;
    const firstVideo = this.#pc.getTransceivers().find((t) => t.receiver.track.kind === 'video');
    return transceiver !== firstVideo;
  }

  async #offer() {
    if (this.#closed) return;
    try {
      this.#makingOffer = true;
      this.negotiationStartedAt ??= performance.now();
      await this.#pc.setLocalDescription();
      // A remote offer may have rolled ours back while it was being made.
      if (this.#pc.signalingState !== 'have-local-offer') return;
      this.#send(() => this.#signaling.sendOffer(this.peerId, this.#pc.localDescription.sdp));
      this.#armAnswerTimer();
    } catch (err) {
      if (!this.#closed) console.warn(`peer ${this.peerId}: offer failed`, err);
    } finally {
      this.#makingOffer = false;
    }
  }

  #armAnswerTimer() {
    clearTimeout(this.#answerTimer);
    this.#answerTimer = setTimeout(() => {
      // While this side's signaling is down the offer waits in its outbox: not lost yet.
      if (this.#signaling.state !== 'connected') {
        this.#armAnswerTimer();
        return;
      }
      this.#enqueue(async () => {
        if (this.#pc.signalingState !== 'have-local-offer') return;
        await this.#pc.setLocalDescription({ type: 'rollback' });
        // The rollback leaves changes pending, so `negotiationneeded` offers again.
        this.restartIce();
      });
    }, ANSWER_TIMEOUT_MS);
  }

  async #onDescription({ type, sdp }) {
    const pc = this.#pc;
    const readyForOffer = !this.#makingOffer && (pc.signalingState === 'stable' || this.#settingRemoteAnswer);
    const offerCollision = type === 'offer' && !readyForOffer;
    if (offerCollision) this.collisions += 1;
    this.#ignoreOffer = !this.polite && offerCollision;
    if (this.#ignoreOffer) return;
    if (type === 'answer' && pc.signalingState !== 'have-local-offer') {
      // The answer to an offer rolled back since (timeout or glare): stale.
      return;
    }
    // Glare on the polite side: setting their offer rolls our own back in the same
    // step. A separate rollback first would let `negotiationneeded` slip in between
    // and send an offer that is stale at once.
    this.#settingRemoteAnswer = type === 'answer';
    try {
      await pc.setRemoteDescription({ type, sdp });
    } finally {
      this.#settingRemoteAnswer = false;
    }
    if (type === 'offer') {
      this.negotiationStartedAt ??= performance.now();
      this.#awaitingFirstOffer = false;
      await this.#attachLocalTracks();
      await pc.setLocalDescription();
      this.#send(() => this.#signaling.sendAnswer(this.peerId, pc.localDescription.sdp));
    }
    this.negotiations += 1;
    this.#emit('negotiated');
  }

  async #onCandidate(candidate) {
    try {
      await this.#pc.addIceCandidate(candidate ?? null);
    } catch (err) {
      // Candidates for an offer this side ignored, or of an ICE generation replaced
      // since, cannot apply; that is expected.
      if (!this.#ignoreOffer && this.#pc.remoteDescription) {
        console.debug(`peer ${this.peerId}: candidate not applied`, err);
      }
    }
  }

  #onIceStateChange() {
    const state = this.#pc.iceConnectionState;
    clearTimeout(this.#disconnectedTimer);
    if (state === 'connected' || state === 'completed') {
      if (!this.everConnected) {
        this.everConnected = true;
        this.iceConnectedMs = Math.round(performance.now() - (this.negotiationStartedAt ?? performance.now()));
      }
      this.iceFailed = false;
      this.iceFailures = 0;
      this.problem = null;
      this.#failureHandled = false;
      clearTimeout(this.#retryTimer);
      this.retryAt = null;
    } else if (state === 'checking') {
      // A new attempt, this side's restart or the other's: its failure counts again.
      this.#failureHandled = false;
    } else if (state === 'disconnected') {
      this.#disconnectedTimer = setTimeout(() => {
        if (this.#pc.iceConnectionState === 'disconnected' && !this.#failureHandled) this.restartIce();
      }, DISCONNECTED_GRACE_MS);
    } else if (state === 'failed') {
      this.#onIceFailed();
    }
    this.#emit('state');
    if (state === 'disconnected' || state === 'failed') this.#emit('ice-disconnected');
  }

  // Restarting at once after every failure would cycle checks forever on a
  // network that allows no path; the waits grow instead, and the person is told why.
  #onIceFailed() {
    if (this.#failureHandled || this.#closed) return;
    this.#failureHandled = true;
    clearTimeout(this.#disconnectedTimer);
    this.iceFailed = true;
    this.iceFailures += 1;
    const delay = iceRetryDelay(this.iceFailures, { wasConnected: this.everConnected });
    this.lastRetryDelayMs = delay;
    if (delay === 0) {
      this.restartIce();
      return;
    }
    this.problem = iceFailureCause({ iceServers: this.#iceServers, localCandidateTypes: this.#localCandidateTypes });
    clearTimeout(this.#retryTimer);
    this.retryAt = performance.now() + delay;
    this.#retryTimer = setTimeout(() => this.restartIce(), delay);
  }
}
