// One person's tile in the call grid: video, name, microphone state, a raised
// hand, an avatar when their camera is off, connection state, the reactions they
// send floating up, and the optional stats panel.

import { h, hueFor, initials } from './dom.js';
import { qualityOf } from '../call-stats.js';
import { icon } from './icons.js';

const STAT_ROWS = [
  ['rtt', 'Round trip'],
  ['receive', 'Receiving'],
  ['send', 'Sending'],
  ['loss', 'Packet loss'],
  ['resolution', 'Resolution'],
  ['route', 'Route'],
  ['safety', 'Safety code'],
];

const QUALITY_WORDS = { good: 'good', fair: 'fair', poor: 'poor' };

/** How long a reaction floats over the tile. */
export const REACTION_MS = 3000;
const MAX_REACTIONS = 6;

const ROUTE_LABELS = {
  host: 'direct (host)',
  srflx: 'direct via NAT (srflx)',
  prflx: 'direct via NAT (prflx)',
  relay: 'relayed (TURN)',
};

function formatRate(kbps) {
  if (kbps === null) return '\u2014';
  return kbps >= 1000 ? `${(kbps / 1000).toFixed(1)} Mbit/s` : `${kbps} kbit/s`;
}

export class VideoTile {
  #video;
  #avatar;
  #nameText;
  #micIcon;
  #badge;
  #problem;
  #problemKey = null;
  #statsPanel;
  #statValues = new Map();
  #quality;
  #pinButton = null;
  #name = '';
  #hand;
  #media = { audio: true, video: true, screen: false };
  #handRaised = false;

  /**
   * @param {{name: string, local?: boolean, peerId?: string}} options
   */
  constructor({ name, local = false, peerId = null, onPin = null, onHide = null, presentation = false }) {
    this.local = local;
    this.presentation = presentation;
    this.#video = h('video', { autoplay: true, playsInline: true, muted: local, class: 'tile-video' });
    this.#avatar = h('div', { class: 'tile-avatar', 'aria-hidden': 'true' });
    this.#nameText = h('span', { class: 'tile-name-text' });
    this.#micIcon = h('span', { class: 'tile-mic' });
    this.#hand = h('span', { class: 'tile-hand', role: 'img', 'aria-label': 'Hand raised', title: 'Hand raised', hidden: true }, '\u270b');
    this.#badge = h('div', { class: 'tile-badge', hidden: true });
    // Always in the tree, so that screen readers announce it when text arrives.
    this.#problem = h('div', { class: 'tile-problem', role: 'status', 'aria-live': 'polite', 'aria-atomic': 'true' });
    // Quality stats describe a connection; your own tile has none.
    this.#statsPanel = local ? null : this.#buildStatsPanel();
    this.#quality = local
      ? null
      : h('span', { class: 'tile-quality', role: 'img', hidden: true }, h('i'), h('i'), h('i'));
    const hideButton = onHide
      ? h('button', { type: 'button', class: 'tile-pin tile-hide', 'aria-label': 'Hide your own video', onclick: onHide }, icon('self-view'))
      : null;
    if (onPin) {
      this.#pinButton = h('button', { type: 'button', class: 'tile-pin', 'aria-pressed': 'false', onclick: onPin }, icon('pin'));
    }
    this.element = h(
      'figure',
      {
        class: `tile${local ? ' tile--local' : ''}${presentation ? ' tile--presentation' : ''}`,
        'data-peer': peerId ?? 'local',
      },
      this.#video,
      this.#avatar,
      this.#badge,
      this.#problem,
      this.#statsPanel,
      this.#pinButton,
      hideButton,
      h('figcaption', { class: 'tile-name' }, this.#hand, this.#micIcon, this.#nameText, this.#quality),
    );
    this.setName(name);
    this.setMedia({ audio: true, video: true, screen: false });
  }

  #buildStatsPanel() {
    return h(
      'dl',
      { class: 'tile-stats', hidden: true },
      STAT_ROWS.map(([key, label]) => {
        const value = h('dd', {}, '\u2014');
        this.#statValues.set(key, value);
        return h('div', { class: 'tile-stat' }, h('dt', {}, label), value);
      }),
    );
  }

  get video() {
    return this.#video;
  }

  setName(name) {
    this.#name = name;
    this.#nameText.textContent = this.presentation ? `${name} is presenting` : this.local ? `${name} (you)` : name;
    this.#avatar.textContent = initials(name);
    this.#avatar.style.setProperty('--hue', String(hueFor(name)));
    this.element.setAttribute('aria-label', this.presentation ? `${name}\u2019s screen` : this.local ? `You, ${name}` : name);
    this.#pinButton?.setAttribute('aria-label', `Pin ${name} to the stage`);
  }

  /** Highlights the tile while its person is heard. */
  setSpeaking(speaking) {
    this.element.classList.toggle('tile--speaking', speaking);
  }

  setPinned(pinned) {
    this.#pinButton?.setAttribute('aria-pressed', String(pinned));
    this.#pinButton?.setAttribute('aria-label', pinned ? `Unpin ${this.#name}` : `Pin ${this.#name} to the stage`);
    this.element.classList.toggle('tile--pinned', pinned);
  }

  setFeatured(featured) {
    this.element.classList.toggle('tile--featured', featured);
  }

  setSafetyCode(code) {
    this.#statValues.get('safety')?.replaceChildren(code ?? '\u2014');
  }

  setStream(stream) {
    if (this.#video.srcObject !== stream) this.#video.srcObject = stream;
  }

  /** Shows the microphone and camera state: {audio, video, screen}. */
  setMedia({ audio, video, screen }) {
    this.#media = { audio, video, screen };
    this.element.classList.toggle('tile--camera-off', !video);
    this.element.classList.toggle('tile--muted', !audio);
    this.element.classList.toggle('tile--screen', Boolean(screen));
    this.#micIcon.replaceChildren(icon(audio ? 'mic' : 'mic-off'));
    this.#micIcon.title = audio ? 'Microphone on' : 'Muted';
    this.#renderLabel();
  }

  /** Shows or hides the raised hand. */
  setHand(raised) {
    this.#handRaised = Boolean(raised);
    this.#hand.hidden = !this.#handRaised;
    this.element.classList.toggle('tile--hand', this.#handRaised);
    this.#renderLabel();
  }

  /** Floats `emoji` up over the tile for a moment (still, with reduced motion). */
  react(emoji) {
    const float = h('span', { class: 'tile-reaction', 'aria-hidden': 'true' }, emoji);
    float.style.setProperty('--drift', `${Math.round(Math.random() * 40 - 20)}px`);
    this.element.append(float);
    const floats = this.element.querySelectorAll('.tile-reaction');
    if (floats.length > MAX_REACTIONS) floats[0].remove();
    setTimeout(() => float.remove(), REACTION_MS);
  }

  #renderLabel() {
    const { audio, video, screen } = this.#media;
    const who = this.local ? 'You' : this.#name;
    const state = [
      this.#handRaised ? 'hand raised' : null,
      audio ? null : 'muted',
      video ? null : 'camera off',
      screen ? 'sharing screen' : null,
    ].filter(Boolean);
    this.#nameText.setAttribute('aria-label', state.length ? `${who}, ${state.join(', ')}` : who);
  }

  /** Connection trouble in words, or null when media flows. */
  setBadge(text) {
    this.#badge.hidden = !text;
    this.#badge.textContent = text ?? '';
    this.element.classList.toggle('tile--waiting', Boolean(text));
  }

  /**
   * Why the connection cannot be made, in words: `{title, body}` from
   * messages.connectionProblem, or null to clear it.
   */
  setProblem(problem) {
    const key = problem ? `${problem.title}\n${problem.body}` : null;
    // Rewritten only when it changes, or screen readers would repeat it on every render.
    if (key === this.#problemKey) return;
    this.#problemKey = key;
    this.#problem.replaceChildren(
      ...(problem ? [h('strong', { class: 'tile-problem-title' }, problem.title), h('span', {}, ` ${problem.body}`)] : []),
    );
    this.element.classList.toggle('tile--problem', Boolean(problem));
  }

  setStatsVisible(visible) {
    if (this.#statsPanel) this.#statsPanel.hidden = !visible;
  }

  /** @param {ReturnType<import('../call-stats.js').summarize>} summary */
  setStats(summary) {
    const set = (key, text) => {
      this.#statValues.get(key).textContent = text;
    };
    set('rtt', summary.rttMs === null ? '\u2014' : `${Math.round(summary.rttMs)} ms`);
    set('receive', formatRate(summary.receiveKbps));
    set('send', formatRate(summary.sendKbps));
    set('loss', summary.lossPercent === null ? '\u2014' : `${summary.lossPercent} %`);
    set(
      'resolution',
      summary.frameWidth
        ? `${summary.frameWidth}\u00d7${summary.frameHeight}${summary.framesPerSecond ? ` @ ${Math.round(summary.framesPerSecond)} fps` : ''}`
        : '\u2014',
    );
    this.#renderQuality(summary);
    const route = ROUTE_LABELS[summary.candidateType] ?? '\u2014';
    set('route', summary.protocol && summary.candidateType ? `${route}, ${summary.protocol.toUpperCase()}` : route);
  }

  // Bars and words for everyone; the numbers are in the stats panel.
  #renderQuality(summary) {
    const quality = qualityOf(summary);
    this.#quality.hidden = !quality;
    if (!quality) return;
    this.#quality.dataset.quality = quality;
    const parts = [
      summary.rttMs === null ? null : `round trip ${Math.round(summary.rttMs)} ms`,
      summary.lossPercent === null ? null : `${summary.lossPercent} % loss`,
      summary.receiveKbps === null ? null : `receiving ${formatRate(summary.receiveKbps)}`,
    ].filter(Boolean);
    const label = `Connection ${QUALITY_WORDS[quality]}: ${parts.join(', ')}`;
    this.#quality.setAttribute('aria-label', label);
    this.#quality.title = label;
  }

  remove() {
    this.#video.srcObject = null;
    this.element.remove();
  }
}
