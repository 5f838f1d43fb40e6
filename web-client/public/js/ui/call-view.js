// The in-call screen: top bar with the room and the signaling state, the video
// grid, the side panels (people, chat), and the control bar with the raised hand
// and reactions.

import { MicLevel } from '../mic-level.js';
import { inviteUrl } from '../room-link.js';
import { LOCAL, SpeakingWatch } from '../speaking.js';
import { createDevicePicker } from './device-picker.js';
import { h } from './dom.js';
import { icon } from './icons.js';
import { copyText, createInviteLink } from './invite-link.js';
import { bestGrid } from './layout.js';
import { REACTIONS } from '../../lib/signaling-client.js';
import { ChatPanel } from './chat-panel.js';
import {
  REACTION_NAMES,
  connectionBadge,
  connectionProblem,
  handFailedText,
  mediaProblemMessage,
  peerLeftText,
  signalingStatus,
  undeliveredStateText,
} from './messages.js';
import { PeoplePanel } from './people-panel.js';
import { VideoTile } from './tile.js';
import { Toasts } from './toasts.js';

const SHORTCUTS = { mic: 'm', camera: 'v', stats: 's', people: 'p', layout: 'l', chat: 'c', hand: 'h' };

function controlButton({ id, iconName, label, shortcut, onClick, extraClass = '' }) {
  const labelText = h('span', { class: 'control-label' }, label);
  const button = h(
    'button',
    {
      type: 'button',
      id,
      class: `control ${extraClass}`.trim(),
      'aria-keyshortcuts': shortcut ? shortcut.toUpperCase() : null,
      onclick: onClick,
    },
    icon(iconName),
    labelText,
  );
  return {
    button,
    set({ iconName: nextIcon, label: nextLabel, off, pressed, title }) {
      if (nextIcon) button.replaceChildren(icon(nextIcon), labelText);
      if (nextLabel) labelText.textContent = nextLabel;
      if (off !== undefined) button.classList.toggle('control--off', off);
      if (pressed !== undefined) button.setAttribute('aria-pressed', String(pressed));
      if (title) button.title = title;
    },
  };
}

export class CallView {
  #call;
  #media;
  #room;
  #origin;
  #onLeave;
  #stage;
  #tiles = new Map();
  #screenTiles = new Map();
  #presenting;
  #showSelfView;
  #localTile;
  #waiting;
  #statusPill;
  #peopleCount;
  #toasts = new Toasts();
  #controls = {};
  #settings;
  #picker;
  #statsVisible = false;
  #resizeObserver;
  #localTrack = null;
  #subscriptions = [];
  #name;
  #micLevel = new MicLevel();
  #speaking;
  #people;
  #pinned = null;
  #speakerView = false;
  #chat;
  #unread = 0;
  #unreadBadge;
  #reactions;

  /**
   * @param {object} options
   * @param {import('../call.js').Call} options.call
   * @param {import('../local-media.js').LocalMedia} options.media
   * @param {string} options.room
   * @param {string} options.name
   * @param {string} options.origin
   * @param {() => void} options.onLeave
   */
  constructor({ call, media, room, name, origin, onLeave }) {
    this.#call = call;
    this.#media = media;
    this.#room = room;
    this.#origin = origin;
    this.#onLeave = onLeave;
    this.#name = name;
    this.#speaking = new SpeakingWatch(call, this.#micLevel);
    this.#people = new PeoplePanel({ onPin: (peerId) => this.#togglePin(peerId), onClose: () => this.#togglePeople() });
    this.#chat = new ChatPanel({
      onSend: (text) => call.sendChat(text),
      onClose: () => this.#toggleChat(false),
      maxBytes: call.maxChatBytes,
    });

    this.#localTile = new VideoTile({ name, local: true, onHide: () => this.#setSelfViewHidden(true) });
    this.#showSelfView = h(
      'button',
      { type: 'button', class: 'button button--secondary', id: 'show-self-view', hidden: true, onclick: () => this.#setSelfViewHidden(false) },
      icon('self-view'),
      h('span', { class: 'button-label' }, 'Show your video'),
    );
    this.#stage = h('section', { class: 'stage', 'aria-label': 'Participants' }, this.#localTile.element);
    this.#waiting = h(
      'div',
      { class: 'waiting-card' },
      h('h2', {}, 'Waiting for others to join'),
      h('p', {}, 'Share this link with the people you want to talk to.'),
      createInviteLink(inviteUrl(origin, room), { compact: true }).element,
    );
    this.#statusPill = h('div', { class: 'status-pill', role: 'status', 'aria-live': 'polite', id: 'signaling-status' });
    this.#peopleCount = h('span', { class: 'people-count' });
    this.#presenting = h('div', { class: 'presenting', role: 'status', hidden: true });

    this.element = h(
      'main',
      { class: 'call', id: 'main', tabIndex: -1 },
      h(
        'header',
        { class: 'topbar' },
        h('div', { class: 'topbar-room' }, h('h1', { class: 'room-name' }, room), this.#peopleCount),
        this.#statusPill,
        this.#presenting,
        this.#showSelfView,
        h(
          'button',
          { type: 'button', class: 'button button--secondary topbar-invite', onclick: () => this.#copyInvite() },
          icon('link'),
          h('span', { class: 'button-label' }, 'Copy invite link'),
        ),
      ),
      h(
        'div',
        { class: 'call-body' },
        h('div', { class: 'stage-wrap' }, this.#stage, this.#waiting),
        this.#people.element,
        this.#chat.element,
      ),
      this.#buildReactions(),
      this.#buildControls(),
      this.#buildSettings(),
      this.#toasts.element,
      this.#chat.announcer,
    );

    this.#listen(call, 'signaling', ({ detail }) => this.#renderSignaling(detail));
    this.#listen(call, 'peer-added', ({ detail }) => this.#addTile(detail.link, detail));
    this.#listen(call, 'peer-changed', ({ detail }) => this.#renderPeer(detail.link));
    this.#listen(this.#speaking, 'change', () => this.#renderSpeaking());
    this.#listen(call, 'peer-removed', ({ detail }) => this.#removeTile(detail));
    this.#listen(call, 'stats', ({ detail }) => this.#tiles.get(detail.peerId)?.setStats(detail.summary));
    this.#listen(call, 'rejoined', () => this.#toasts.show('Reconnected to the call'));
    this.#listen(call, 'chat', ({ detail }) => this.#onChat(detail.message));
    this.#listen(call, 'chat-failed', ({ detail }) => this.#chat.failed(detail.message, detail.code));
    this.#listen(call, 'hand', ({ detail }) => this.#onHand(detail));
    this.#listen(call, 'state-undelivered', ({ detail }) => this.#toasts.show(undeliveredStateText(detail.name), { tone: 'warn' }));
    this.#listen(call, 'reaction', ({ detail }) => this.#onReaction(detail));
    this.#listen(media, 'change', () => this.#renderLocal());
    this.#listen(document, 'keydown', (event) => this.#onKey(event));

    this.#resizeObserver = new ResizeObserver(() => this.#layout());
    this.#resizeObserver.observe(this.#stage);
    for (const link of call.links.values()) this.#addTile(link);
    // The chat so far: a late joiner reads what was said before.
    for (const message of call.chat) this.#chat.show(message);
    this.#unread = call.chat.filter((message) => !message.own).length;
    this.#renderUnread();
    this.#renderSignaling(call.connection);
    this.#renderLocal();
    this.#layout();
  }

  #listen(target, type, handler) {
    target.addEventListener(type, handler);
    this.#subscriptions.push(() => target.removeEventListener(type, handler));
  }

  focus() {
    this.#controls.mic.button.focus();
  }

  dispose() {
    for (const unsubscribe of this.#subscriptions) unsubscribe();
    this.#resizeObserver.disconnect();
    this.#speaking.stop();
    this.#micLevel.close();
    this.#picker.dispose();
    for (const tile of [...this.#tiles.values(), ...this.#screenTiles.values()]) tile.remove();
    this.#localTile.remove();
  }

  #buildControls() {
    const c = this.#controls;
    c.mic = controlButton({
      id: 'toggle-mic',
      iconName: 'mic',
      label: 'Mute',
      shortcut: SHORTCUTS.mic,
      onClick: () => this.#toggleMic(),
    });
    c.camera = controlButton({
      id: 'toggle-camera',
      iconName: 'camera',
      label: 'Stop video',
      shortcut: SHORTCUTS.camera,
      onClick: () => this.#toggleCamera(),
    });
    c.screen = controlButton({
      id: 'toggle-screen',
      iconName: 'screen',
      label: 'Share screen',
      onClick: () => this.#toggleScreen(),
    });
    c.stats = controlButton({
      id: 'toggle-stats',
      iconName: 'stats',
      label: 'Stats',
      shortcut: SHORTCUTS.stats,
      onClick: () => this.#toggleStats(),
    });
    c.stats.set({ pressed: false, title: 'Show connection quality (S)' });
    c.people = controlButton({
      id: 'toggle-people',
      iconName: 'people',
      label: 'People',
      shortcut: SHORTCUTS.people,
      onClick: () => this.#togglePeople(),
    });
    c.people.set({ pressed: false, title: 'Show everyone in the call (P)' });
    c.layout = controlButton({
      id: 'toggle-layout',
      iconName: 'layout',
      label: 'Speaker view',
      shortcut: SHORTCUTS.layout,
      onClick: () => this.#toggleSpeakerView(),
    });
    c.layout.set({ pressed: false, title: 'The current speaker on stage, the others beside (L)' });
    c.chat = controlButton({
      id: 'toggle-chat',
      iconName: 'chat',
      label: 'Chat',
      shortcut: SHORTCUTS.chat,
      onClick: () => this.#toggleChat(),
    });
    c.chat.set({ pressed: false, title: 'Messages to everyone in the call (C)' });
    this.#unreadBadge = h('span', { class: 'control-badge', 'aria-hidden': 'true', hidden: true });
    c.chat.button.append(this.#unreadBadge);
    c.hand = controlButton({
      id: 'toggle-hand',
      iconName: 'hand',
      label: 'Raise hand',
      shortcut: SHORTCUTS.hand,
      onClick: () => this.#call.setHand(!this.#call.handRaised),
    });
    c.hand.set({ pressed: false, title: 'Raise your hand (H)' });
    c.react = controlButton({
      id: 'toggle-reactions',
      iconName: 'smile',
      label: 'React',
      onClick: () => this.#toggleReactions(),
    });
    c.react.set({ pressed: false, title: 'Send a reaction everyone sees for a moment' });
    c.react.button.setAttribute('aria-controls', 'reactions');
    const roomMessages = this.#call.roomMessages;
    for (const control of [c.chat, c.hand, c.react]) control.button.hidden = !roomMessages;
    c.settings = controlButton({
      id: 'open-settings',
      iconName: 'settings',
      label: 'Devices',
      onClick: () => this.#openSettings(),
    });
    c.leave = controlButton({
      id: 'leave-call',
      iconName: 'leave',
      label: 'Leave',
      extraClass: 'control--danger',
      onClick: () => this.#onLeave(),
    });
    // Phones and some browsers cannot capture the screen.
    c.screen.button.hidden = typeof navigator.mediaDevices?.getDisplayMedia !== 'function';
    return h(
      'nav',
      { class: 'controls', 'aria-label': 'Call controls' },
      h('div', { class: 'controls-group' }, c.mic.button, c.camera.button, c.screen.button),
      h('div', { class: 'controls-group' }, c.hand.button, c.react.button, c.chat.button),
      h('div', { class: 'controls-group' }, c.people.button, c.layout.button, c.stats.button, c.settings.button),
      h('div', { class: 'controls-group' }, c.leave.button),
    );
  }

  #buildReactions() {
    this.#reactions = h(
      'div',
      { class: 'reactions', id: 'reactions', role: 'group', 'aria-label': 'Reactions', hidden: true },
      REACTIONS.map((emoji) =>
        h(
          'button',
          {
            type: 'button',
            class: 'reaction-button',
            'data-emoji': emoji,
            'aria-label': `Send ${REACTION_NAMES[emoji] ?? emoji}`,
            title: REACTION_NAMES[emoji] ?? emoji,
            onclick: () => this.#call.sendReaction(emoji),
          },
          emoji,
        ),
      ),
    );
    this.#reactions.addEventListener('keydown', (event) => {
      if (event.key === 'Escape') {
        event.preventDefault();
        this.#toggleReactions(false);
      }
    });
    return this.#reactions;
  }

  #toggleReactions(open = this.#reactions.hidden) {
    this.#reactions.hidden = !open;
    this.#controls.react.set({ pressed: open });
    if (open) this.#reactions.querySelector('button').focus();
    else if (this.#reactions.contains(document.activeElement) || document.activeElement === document.body) {
      this.#controls.react.button.focus();
    }
  }

  // One side panel at a time: the stage keeps its room.
  #toggleChat(open = !this.#chat.open, { returnFocus = true } = {}) {
    if (open && this.#people.open) this.#togglePeople();
    this.#chat.open = open;
    this.#controls.chat.set({ pressed: open });
    if (open) {
      this.#unread = 0;
      this.#renderUnread();
      this.#chat.focusInput();
    } else if (returnFocus) {
      this.#controls.chat.button.focus();
    }
    this.#layout();
  }

  #onChat(message) {
    this.#chat.show(message);
    if (message.own) return;
    this.#chat.announce(`${message.name} says: ${message.text}`);
    if (!this.#chat.open) {
      this.#unread += 1;
      this.#renderUnread();
    }
  }

  #renderUnread() {
    const unread = this.#unread;
    this.#unreadBadge.hidden = unread === 0;
    this.#unreadBadge.textContent = unread > 99 ? '99+' : String(unread);
    const label = unread === 0 ? 'Chat' : `Chat, ${unread} unread ${unread === 1 ? 'message' : 'messages'}`;
    this.#controls.chat.button.setAttribute('aria-label', label);
  }

  #onHand({ peerId, name, hand, failed }) {
    if (peerId === 'local') {
      this.#localTile.setHand(hand);
      this.#controls.hand.set({
        pressed: hand,
        label: hand ? 'Lower hand' : 'Raise hand',
        title: `${hand ? 'Lower' : 'Raise'} your hand (H)`,
      });
      // The change that failed was the opposite of what is shown now.
      if (failed) this.#toasts.show(handFailedText(!hand), { tone: 'warn' });
    } else {
      this.#tiles.get(peerId)?.setHand(hand);
      if (hand) this.#toasts.show(`${name} raised their hand`);
    }
    this.#renderPeople();
  }

  #onReaction({ peerId, emoji }) {
    const tile = peerId === 'local' ? this.#localTile : this.#tiles.get(peerId);
    tile?.react(emoji);
    if (peerId !== 'local') {
      const name = this.#call.links.get(peerId)?.name ?? 'Someone';
      this.#chat.announce(`${name} reacted with ${REACTION_NAMES[emoji] ?? emoji}`);
    }
  }

  #buildSettings() {
    this.#picker = createDevicePicker(this.#media, {
      onFailure: () => this.#toasts.show(mediaProblemMessage(this.#media.problems) ?? 'That device could not be used', { tone: 'warn' }),
    });
    this.#settings = h(
      'dialog',
      { class: 'settings', 'aria-labelledby': 'settings-title' },
      h(
        'form',
        { method: 'dialog', class: 'settings-form' },
        h('h2', { id: 'settings-title' }, 'Camera and microphone'),
        this.#picker.element,
        h('div', { class: 'settings-actions' }, h('button', { class: 'button button--primary', value: 'done' }, 'Done')),
      ),
    );
    return this.#settings;
  }

  async #openSettings() {
    await this.#picker.refresh();
    this.#settings.showModal();
  }

  async #toggleMic() {
    const wasOn = this.#media.state.audio;
    const ok = await this.#media.setMicEnabled(!wasOn);
    if (!ok) this.#toasts.show(mediaProblemMessage(this.#media.problems) ?? 'The microphone could not be started', { tone: 'warn' });
  }

  async #toggleCamera() {
    const ok = await this.#media.setCameraEnabled(!this.#media.state.camera);
    if (!ok) this.#toasts.show(mediaProblemMessage(this.#media.problems) ?? 'The camera could not be started', { tone: 'warn' });
  }

  async #toggleScreen() {
    if (this.#media.state.screen) {
      this.#media.stopScreenShare();
      return;
    }
    try {
      await this.#media.startScreenShare();
    } catch {
      this.#toasts.show('Screen sharing could not be started', { tone: 'warn' });
    }
  }

  #toggleStats() {
    this.#statsVisible = !this.#statsVisible;
    this.#controls.stats.set({ pressed: this.#statsVisible });
    for (const tile of this.#tiles.values()) tile.setStatsVisible(this.#statsVisible);
  }

  // The own video can be put away, e.g. when it distracts; the others still see it.
  #setSelfViewHidden(hidden) {
    this.#localTile.element.hidden = hidden;
    this.#showSelfView.hidden = !hidden;
    (hidden ? this.#showSelfView : this.#controls.mic.button).focus();
    this.#layout();
  }

  #togglePeople() {
    const open = !this.#people.open;
    if (open && this.#chat.open) this.#toggleChat(false, { returnFocus: false });
    this.#people.open = open;
    this.#controls.people.set({ pressed: open });
    this.#renderPeople();
    this.#layout();
  }

  #toggleSpeakerView() {
    this.#speakerView = !this.#speakerView;
    if (!this.#speakerView) this.#pinned = null;
    this.#renderPins();
  }

  // Pinning puts a person on stage whoever speaks; it implies the speaker view.
  #togglePin(peerId) {
    this.#pinned = this.#pinned === peerId ? null : peerId;
    if (this.#pinned) this.#speakerView = true;
    this.#renderPins();
  }

  #renderPins() {
    this.#controls.layout.set({ pressed: this.#speakerView });
    for (const [peerId, tile] of this.#tiles) tile.setPinned(peerId === this.#pinned);
    this.#renderPeople();
    this.#layout();
  }

  #renderSpeaking() {
    const heard = this.#speaking.speaking;
    this.#localTile.setSpeaking(heard.has(LOCAL));
    for (const [peerId, tile] of this.#tiles) tile.setSpeaking(heard.has(peerId));
    this.#renderPeople();
    if (this.#speakerView && !this.#pinned) this.#layout();
  }

  #renderPeople() {
    if (!this.#people.open) return;
    const heard = this.#speaking.speaking;
    const local = this.#media.state;
    this.#people.render([
      { id: 'local', name: this.#name, local: true, ...local, hand: this.#call.handRaised, speaking: heard.has(LOCAL), pinned: false, safetyCode: null },
      ...[...this.#call.links.values()].map((link) => ({
        id: link.peerId,
        name: link.name,
        local: false,
        ...link.remoteState,
        hand: this.#call.handOf(link.peerId),
        speaking: heard.has(link.peerId),
        pinned: this.#pinned === link.peerId,
        safetyCode: this.#call.safetyCode(link.peerId),
      })),
    ]);
  }

  async #copyInvite() {
    const copied = await copyText(inviteUrl(this.#origin, this.#room));
    this.#toasts.show(copied ? 'Invite link copied' : `Invite link: ${inviteUrl(this.#origin, this.#room)}`);
  }

  #onKey(event) {
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
    const target = event.target;
    if (target instanceof HTMLElement && (target.isContentEditable || ['INPUT', 'SELECT', 'TEXTAREA'].includes(target.tagName))) return;
    if (this.#settings.open) return;
    const key = event.key.toLowerCase();
    if (key === SHORTCUTS.mic) this.#toggleMic();
    else if (key === SHORTCUTS.camera) this.#toggleCamera();
    else if (key === SHORTCUTS.stats) this.#toggleStats();
    else if (key === SHORTCUTS.people) this.#togglePeople();
    else if (key === SHORTCUTS.layout) this.#toggleSpeakerView();
    else if (key === SHORTCUTS.chat && this.#call.roomMessages) this.#toggleChat();
    else if (key === SHORTCUTS.hand && this.#call.roomMessages) this.#call.setHand(!this.#call.handRaised);
    else return;
    event.preventDefault();
  }

  #renderSignaling(detail) {
    const { label, tone } = signalingStatus(detail);
    this.#statusPill.textContent = label;
    this.#statusPill.dataset.tone = tone;
    this.#statusPill.dataset.state = detail.state;
    this.#statusPill.dataset.delivery = detail.refused ? 'refused' : 'ok';
    // A working connection needs no word; trouble does.
    this.#statusPill.hidden = tone === 'ok';
  }

  #renderLocal() {
    const state = this.#media.state;
    const track = this.#media.videoTrack;
    if (track !== this.#localTrack) {
      this.#localTrack = track;
      this.#localTile.setStream(track ? new MediaStream([track]) : null);
    }
    this.#localTile.setMedia(state);
    this.#micLevel.setTrack(this.#media.audioTrack);
    this.#renderPeople();
    this.#renderPresenting();
    this.#controls.mic.set({
      iconName: state.audio ? 'mic' : 'mic-off',
      label: state.audio ? 'Mute' : 'Unmute',
      off: !state.audio,
      title: `${state.audio ? 'Mute' : 'Unmute'} (M)`,
    });
    const cameraOn = state.camera;
    this.#controls.camera.set({
      iconName: cameraOn ? 'camera' : 'camera-off',
      label: cameraOn ? 'Stop video' : 'Start video',
      off: !cameraOn,
      title: `${cameraOn ? 'Stop' : 'Start'} video (V)`,
    });
    this.#controls.screen.set({
      iconName: state.screen ? 'screen-stop' : 'screen',
      label: state.screen ? 'Stop sharing' : 'Share screen',
      pressed: state.screen,
    });
  }

  #addTile(link, { arrived = false } = {}) {
    if (this.#tiles.has(link.peerId)) return;
    const tile = new VideoTile({ name: link.name, peerId: link.peerId, onPin: () => this.#togglePin(link.peerId) });
    tile.setStream(link.remoteStream);
    tile.setStatsVisible(this.#statsVisible);
    tile.setHand(this.#call.handOf(link.peerId));
    this.#tiles.set(link.peerId, tile);
    this.#stage.append(tile.element);
    this.#renderPeer(link);
    this.#layout();
    if (arrived) this.#toasts.show(`${link.name} joined`);
  }

  #renderPeer(link) {
    const tile = this.#tiles.get(link.peerId);
    if (!tile) return;
    tile.setName(link.name);
    tile.setMedia(link.remoteState);
    tile.setHand(this.#call.handOf(link.peerId));
    tile.setBadge(connectionBadge(link.connectionState, link.everConnected));
    tile.setProblem(connectionProblem(link.problem, link.name));
    tile.element.dataset.connection = link.connectionState;
    tile.setSafetyCode(this.#call.safetyCode(link.peerId));
    this.#renderScreen(link);
    this.#renderPeople();
  }

  // A peer's shared screen gets a tile of its own; their camera tile stays.
  #renderScreen(link) {
    const sharing = link.remoteState.screen && link.screenStream.getVideoTracks().length > 0;
    let tile = this.#screenTiles.get(link.peerId);
    // Layout only when the screen comes or goes: this runs on every peer change.
    const changed = sharing !== Boolean(tile);
    if (sharing && !tile) {
      tile = new VideoTile({ name: link.name, peerId: `${link.peerId}:screen`, presentation: true });
      tile.setStream(link.screenStream);
      this.#screenTiles.set(link.peerId, tile);
      this.#stage.prepend(tile.element);
    } else if (!sharing && tile) {
      tile.remove();
      this.#screenTiles.delete(link.peerId);
    }
    if (tile && sharing) tile.setName(link.name);
    if (changed) {
      this.#renderPresenting();
      this.#layout();
    }
  }

  #renderPresenting() {
    if (!this.#presenting) return;
    const names = [...this.#screenTiles.keys()].map((peerId) => this.#call.links.get(peerId)?.name).filter(Boolean);
    if (this.#media.state.screen) names.unshift(null);
    const text = names.map((name) => (name === null ? 'You are presenting' : `${name} is presenting`)).join(' \u00b7 ');
    this.#presenting.hidden = !text;
    this.#presenting.textContent = text;
  }

  #removeTile({ peerId, name, reason }) {
    const tile = this.#tiles.get(peerId);
    if (!tile) return;
    tile.remove();
    this.#tiles.delete(peerId);
    this.#screenTiles.get(peerId)?.remove();
    this.#screenTiles.delete(peerId);
    this.#renderPresenting();
    if (this.#pinned === peerId) this.#pinned = null;
    this.#renderPeople();
    this.#layout();
    // `ended`: this side's own call ended or restarted; nobody left.
    if (reason !== 'ended') this.#toasts.show(peerLeftText(name, reason));
  }

  #layout() {
    const remote = this.#tiles.size;
    const count = remote + (this.#localTile.element.hidden ? 0 : 1);
    this.#peopleCount.textContent = count === 1 ? 'Just you' : `${count} people`;
    this.#waiting.hidden = remote > 0;
    this.#stage.dataset.count = String(count);
    // One other person: their video fills the stage and yours floats in a corner.
    // A shared screen goes on stage with everyone beside it, never under a tile.
    const presentation = this.#screenTiles.values().next().value ?? null;
    const pair = remote === 1 && !presentation;
    this.#stage.classList.toggle('stage--pair', pair);
    this.#stage.classList.toggle('stage--alone', remote === 0);
    const speaker = Boolean(presentation) || (this.#speakerView && remote >= 2);
    this.#stage.classList.toggle('stage--speaker', speaker);
    const pinnedTile = this.#tiles.get(this.#pinned);
    const featured = speaker
      ? (pinnedTile ?? presentation ?? this.#tiles.get(this.#speaking.dominant) ?? this.#tiles.values().next().value)
      : null;
    for (const tile of [...this.#tiles.values(), ...this.#screenTiles.values()]) tile.setFeatured(tile === featured);
    const tiles = this.#stage.querySelectorAll('.tile:not([hidden])').length;
    this.#stage.style.setProperty('--side-rows', String(Math.max(1, tiles - 1)));
    if (speaker) return;
    const { width, height } = this.#stage.getBoundingClientRect();
    if (!width || !height) return;
    const narrow = width < 600;
    // Portrait phones fit more of each face in portrait tiles.
    const [across, down] = narrow && height > width ? [3, 4] : [16, 9];
    const { tileWidth } = bestGrid(pair || remote === 0 ? 1 : count, width, height, {
      gap: narrow ? 8 : 12,
      aspect: across / down,
    });
    this.#stage.style.setProperty('--tile-width', `${tileWidth}px`);
    this.#stage.style.setProperty('--tile-aspect', `${across} / ${down}`);
  }
}
