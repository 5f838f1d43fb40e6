// Who is speaking: audio levels of every remote peer (from their receivers) and
// of the person's own microphone, sampled a few times a second. A voice comes in
// bursts, so a person counts as speaking for a moment after the last sound.
//
// Dispatches `change` when the set of speakers or the main speaker changes.

const POLL_MS = 250;
/** RMS (remote) or peak (local) level, 0 to 1, above which someone is heard. */
const REMOTE_THRESHOLD = 0.01;
const LOCAL_THRESHOLD = 0.05;
const HOLD_MS = 1200;

export const LOCAL = 'local';

export class SpeakingWatch extends EventTarget {
  #call;
  #micLevel;
  #timer;
  #energy = new Map();
  #heardAt = new Map();
  #loudness = new Map();
  #polling = false;
  /** Ids of the people heard just now; the person's own is LOCAL. */
  speaking = new Set();
  /** The remote peer heard loudest of late, kept until another one speaks. */
  dominant = null;

  /**
   * @param {import('./call.js').Call} call
   * @param {import('./mic-level.js').MicLevel} micLevel
   */
  constructor(call, micLevel) {
    super();
    this.#call = call;
    this.#micLevel = micLevel;
    this.#timer = setInterval(() => this.#poll(), POLL_MS);
  }

  stop() {
    clearInterval(this.#timer);
  }

  async #poll() {
    if (this.#polling) return;
    this.#polling = true;
    try {
      const now = performance.now();
      const links = [...this.#call.links.values()];
      const levels = await Promise.all(links.map((link) => this.#remoteLevel(link)));
      links.forEach((link, i) => this.#hear(link.peerId, levels[i], REMOTE_THRESHOLD, now));
      this.#hear(LOCAL, this.#micLevel.peak(), LOCAL_THRESHOLD, now);
      for (const id of this.#heardAt.keys()) {
        if (id !== LOCAL && !this.#call.links.has(id)) this.#forget(id);
      }
      this.#update(now);
    } finally {
      this.#polling = false;
    }
  }

  #hear(id, level, threshold, now) {
    if (level > threshold) {
      this.#heardAt.set(id, now);
      this.#loudness.set(id, level);
    }
  }

  #forget(id) {
    this.#heardAt.delete(id);
    this.#loudness.delete(id);
    this.#energy.delete(id);
  }

  #update(now) {
    const speaking = new Set([...this.#heardAt].filter(([, at]) => now - at < HOLD_MS).map(([id]) => id));
    const remote = [...speaking].filter((id) => id !== LOCAL);
    const loudest = remote.sort((a, b) => this.#loudness.get(b) - this.#loudness.get(a))[0];
    const dominant = loudest ?? (this.#call.links.has(this.dominant) ? this.dominant : null);
    const changed = dominant !== this.dominant || speaking.size !== this.speaking.size || [...speaking].some((id) => !this.speaking.has(id));
    this.speaking = speaking;
    this.dominant = dominant;
    if (changed) this.dispatchEvent(new Event('change'));
  }

  // The RMS level since the last poll from the receiver's audio energy; where a
  // browser does not count energy, the level of the last packet instead.
  async #remoteLevel(link) {
    if (link.connectionState !== 'connected') return 0;
    const receiver = link.pc.getReceivers().find((r) => r.track?.kind === 'audio');
    if (!receiver) return 0;
    const stats = await receiver.getStats().catch(() => null);
    let inbound = null;
    stats?.forEach((entry) => {
      if (entry.type === 'inbound-rtp' && typeof entry.totalAudioEnergy === 'number') inbound = entry;
    });
    if (!inbound) return receiver.getSynchronizationSources?.()[0]?.audioLevel ?? 0;
    const previous = this.#energy.get(link.peerId);
    this.#energy.set(link.peerId, { energy: inbound.totalAudioEnergy, duration: inbound.totalSamplesDuration });
    if (!previous) return 0;
    const duration = inbound.totalSamplesDuration - previous.duration;
    if (!(duration > 0)) return 0;
    return Math.sqrt(Math.max(0, inbound.totalAudioEnergy - previous.energy) / duration);
  }
}
