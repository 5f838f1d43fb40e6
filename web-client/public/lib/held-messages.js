// Messages the node refused for now (`unavailable`, `draining`), kept to be sent
// again: in the order they were first sent, a newer state replacing an older one
// of the same kind and target, within a count and an age. Only bookkeeping: the
// signaling client decides when to send them.

/** The target of messages for the whole room; peer ids are never empty. */
export const ROOM_TARGET = '';

/**
 * What a held message is: the wire message (with its `id`), its target (a peer
 * id, or {@link ROOM_TARGET}), a key when it is a state that a newer one replaces
 * (`null` otherwise), when it was first sent, and the code of the last refusal.
 * @typedef {{message: object, target: string, stateKey: string|null, since: number, code?: string}} HeldEntry
 */

export class HeldMessages {
  /** @type {HeldEntry[]} oldest first, by request id (ids grow with each send). */
  #entries = [];
  #maxHeld;

  /** @param {{maxHeld: number}} bounds */
  constructor({ maxHeld }) {
    this.#maxHeld = maxHeld;
  }

  get size() {
    return this.#entries.length;
  }

  /** Whether something for `target` waits: later messages for it must queue behind. */
  holds(target) {
    return this.#entries.some((entry) => entry.target === target);
  }

  /**
   * Keeps `entry` in its place. A held state of the same key that is older goes;
   * a newer one makes this one go. Returns what had to go past the count bound,
   * oldest first.
   * @param {HeldEntry} entry
   * @returns {HeldEntry[]}
   */
  hold(entry) {
    if (entry.stateKey !== null) {
      const newer = this.#entries.some((held) => held.stateKey === entry.stateKey && held.message.id > entry.message.id);
      if (newer) return [];
      this.#entries = this.#entries.filter((held) => held.stateKey !== entry.stateKey);
    }
    const at = this.#entries.findIndex((held) => held.message.id > entry.message.id);
    this.#entries.splice(at === -1 ? this.#entries.length : at, 0, entry);
    const over = this.#entries.length - this.#maxHeld;
    return over > 0 ? this.#entries.splice(0, over) : [];
  }

  /** Takes out and returns what was first sent more than `maxAgeMs` before `now`. */
  expire(now, maxAgeMs) {
    const expired = this.#entries.filter((entry) => now - entry.since > maxAgeMs);
    if (expired.length) this.#entries = this.#entries.filter((entry) => now - entry.since <= maxAgeMs);
    return expired;
  }

  /** Takes out the oldest entry, or undefined. */
  shift() {
    return this.#entries.shift();
  }

  /** Takes out everything, oldest first. */
  takeAll() {
    const all = this.#entries;
    this.#entries = [];
    return all;
  }

  /** Takes out the entries `predicate` is true of; returns how many. */
  discard(predicate) {
    const before = this.#entries.length;
    this.#entries = this.#entries.filter((entry) => !predicate(entry));
    return before - this.#entries.length;
  }
}
