// The first screen: a camera preview, the person's name, the room and its invite
// link, and how many people are already in the call. From `/` it starts a new
// call in a freshly named room; from a call link it joins that room.

import { inviteUrl, randomRoomName } from '../room-link.js';
import { h, hueFor, initials } from './dom.js';
import { createDevicePicker } from './device-picker.js';
import { icon } from './icons.js';
import { createInviteLink } from './invite-link.js';
import { MicLevel } from '../mic-level.js';
import { headCountText, mediaProblemMessage, signalingStatus } from './messages.js';

const METER_INTERVAL_MS = 100;
/** How often the lobby asks how many people are in the call. */
const HEAD_COUNT_INTERVAL_MS = 3000;

const NAME_KEY = 'video-caller.name';

function storedName() {
  try {
    return localStorage.getItem(NAME_KEY) ?? '';
  } catch {
    return '';
  }
}

function storeName(name) {
  try {
    localStorage.setItem(NAME_KEY, name);
  } catch {
    // Private browsing without storage: the name is asked again next time.
  }
}

export class Lobby {
  #media;
  #room;
  #origin;
  #nameInput;
  #joinButton;
  #cancelButton;
  #status;
  #alert;
  #mediaNotice;
  #preview;
  #previewAvatar;
  #previewStarting;
  #micButton;
  #cameraButton;
  #invite;
  #roomCode;
  #picker;
  #previewTrack = null;
  #micLevel = new MicLevel();
  #meter;
  #meterTimer;
  #submitted = null;
  #cancelled = null;
  #token;
  #headCount;
  #headCountTimer;
  #headCountAsked = 0;
  #onMediaChange = () => {
    this.#renderMedia();
    this.#picker.refresh();
  };

  /**
   * @param {object} options
   * @param {string|null} options.room the room from the link, or null for a new call
   * @param {string|null} [options.invalidRoom] a room name from the link that is not valid
   * @param {import('../local-media.js').LocalMedia} options.media
   * @param {string} options.origin
   * @param {string|null} [options.token] the join token, which also opens the head count
   */
  constructor({ room, invalidRoom = null, media, origin, token = null }) {
    this.#media = media;
    this.#origin = origin;
    this.#token = token;
    this.startsNewCall = !room;
    this.#room = room ?? randomRoomName();

    this.#nameInput = h('input', {
      id: 'display-name',
      class: 'text-input',
      type: 'text',
      name: 'name',
      required: true,
      maxLength: 64,
      autocomplete: 'name',
      placeholder: 'e.g. Alex Morgan',
      value: storedName(),
    });
    this.#joinButton = h('button', { type: 'submit', class: 'button button--primary button--large', id: 'join-button' });
    this.#cancelButton = h('button', { type: 'button', class: 'button button--ghost', hidden: true }, 'Cancel');
    this.#status = h('p', { class: 'lobby-status', role: 'status', 'aria-live': 'polite' });
    this.#headCount = h('p', { class: 'lobby-count', id: 'lobby-count', role: 'status', 'aria-live': 'polite', hidden: true });
    this.#alert = h('div', { class: 'alert', role: 'alert', hidden: true });
    this.#mediaNotice = h('p', { class: 'media-notice', role: 'alert', hidden: true });
    this.#invite = createInviteLink(inviteUrl(origin, this.#room));
    this.#picker = createDevicePicker(media, { onFailure: () => this.#renderMedia() });

    this.#preview = h('video', { class: 'preview-video', autoplay: true, playsInline: true, muted: true });
    this.#previewAvatar = h('div', { class: 'preview-avatar', 'aria-hidden': 'true' });
    this.#previewStarting = h('p', { class: 'preview-starting' }, 'Starting your camera\u2026');
    this.#micButton = h('button', { type: 'button', class: 'round-button', onclick: () => this.#toggleMic() });
    this.#cameraButton = h('button', { type: 'button', class: 'round-button', onclick: () => this.#toggleCamera() });
    this.#roomCode = h('code', { class: 'room-code' }, this.#room);
    this.#meter = h('meter', { id: 'mic-meter', min: 0, max: 1, low: 0.05, value: 0 });
    this.#meterTimer = setInterval(() => {
      this.#meter.value = this.#micLevel.peak();
    }, METER_INTERVAL_MS);

    const form = h(
      'form',
      { class: 'lobby-card', novalidate: true, 'aria-labelledby': 'lobby-title' },
      h('h1', { id: 'lobby-title' }, this.startsNewCall ? 'Start a call' : 'Ready to join?'),
      h(
        'p',
        { class: 'lobby-subtitle' },
        this.startsNewCall ? 'Choose your name, share the link, and talk face to face.' : 'You are joining ',
        this.startsNewCall ? null : this.#roomCode,
      ),
      invalidRoom !== null
        ? h('div', { class: 'alert', role: 'alert' }, h('strong', {}, 'That call link is not valid.'), ' A new call was prepared for you instead.')
        : null,
      this.#headCount,
      h('div', { class: 'field' }, h('label', { for: 'display-name' }, 'Your name'), this.#nameInput),
      this.startsNewCall
        ? h(
            'div',
            { class: 'field' },
            h('span', { class: 'field-label', id: 'room-label' }, 'Room'),
            h(
              'div',
              { class: 'room-row', 'aria-labelledby': 'room-label' },
              this.#roomCode,
              h(
                'button',
                {
                  type: 'button',
                  class: 'button button--ghost',
                  'aria-label': 'New name for the room',
                  onclick: () => this.#shuffleRoom(),
                },
                icon('shuffle'),
                h('span', { class: 'button-label' }, 'New name'),
              ),
            ),
          )
        : null,
      h('div', { class: 'field' }, h('span', { class: 'field-label' }, 'Invite others with this link'), this.#invite.element),
      h('details', { class: 'lobby-devices' }, h('summary', {}, 'Camera and microphone'), this.#picker.element),
      this.#alert,
      h('div', { class: 'lobby-actions' }, this.#joinButton, this.#cancelButton),
      this.#status,
    );
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.#submit();
    });
    this.#cancelButton.addEventListener('click', () => this.#cancelled?.());

    this.element = h(
      'main',
      { class: 'lobby', id: 'main', tabIndex: -1 },
      h(
        'section',
        { class: 'preview', 'aria-label': 'Your camera preview' },
        h('div', { class: 'preview-frame' }, this.#preview, this.#previewAvatar, this.#previewStarting),
        h('div', { class: 'preview-controls' }, this.#micButton, this.#cameraButton),
        h('div', { class: 'mic-meter' }, h('label', { for: 'mic-meter' }, 'Microphone level'), this.#meter),
        this.#mediaNotice,
      ),
      form,
    );
    this.setJoining(false);
    media.addEventListener('change', this.#onMediaChange);
    this.#nameInput.addEventListener('input', () => this.#renderAvatar());
    this.#renderMedia();
    this.#picker.refresh();
    this.#askHeadCount();
    this.#headCountTimer = setInterval(() => this.#askHeadCount(), HEAD_COUNT_INTERVAL_MS);
  }

  get room() {
    return this.#room;
  }

  focus() {
    (this.#nameInput.value ? this.#joinButton : this.#nameInput).focus();
  }

  /** Resolves with {name, room} when the person asks to join. */
  nextJoinRequest() {
    return new Promise((resolve) => {
      this.#submitted = resolve;
    });
  }

  #request(request) {
    const resolve = this.#submitted;
    this.#submitted = null;
    resolve?.(request);
  }

  /** Resolves when the person cancels a join that is taking long. */
  nextCancel() {
    return new Promise((resolve) => {
      this.#cancelled = resolve;
    });
  }

  setJoining(joining) {
    this.#joinButton.disabled = joining;
    this.#joinButton.textContent = joining ? 'Joining\u2026' : this.startsNewCall ? 'Start call' : 'Join call';
    this.#cancelButton.hidden = !joining;
    if (!joining) this.#status.textContent = '';
  }

  /** The signaling state while joining: tells a person the server is unreachable. */
  showSignaling(detail) {
    const { label, tone } = signalingStatus(detail);
    this.#status.textContent = detail.state === 'connected' ? '' : label;
    this.#status.dataset.tone = tone;
  }

  showError({ title, body }) {
    this.#alert.hidden = false;
    this.#alert.replaceChildren(h('strong', {}, title), ' ', body);
  }

  dispose() {
    this.#media.removeEventListener('change', this.#onMediaChange);
    this.#picker.dispose();
    clearInterval(this.#meterTimer);
    clearInterval(this.#headCountTimer);
    this.#micLevel.close();
    this.#preview.srcObject = null;
  }

  #submit() {
    const name = this.#nameInput.value.trim();
    if (!name) {
      this.#nameInput.setAttribute('aria-invalid', 'true');
      this.showError({ title: 'Please enter your name', body: 'so that others know who joined.' });
      this.#nameInput.focus();
      return;
    }
    this.#nameInput.removeAttribute('aria-invalid');
    this.#alert.hidden = true;
    storeName(name);
    this.#request({ name, room: this.#room });
  }

  #shuffleRoom() {
    this.#room = randomRoomName();
    this.#roomCode.textContent = this.#room;
    this.#invite.setUrl(inviteUrl(this.#origin, this.#room));
    this.#askHeadCount();
  }

  // How many are in the call already. An older node, a refused token or a network
  // problem: the lobby just says nothing about it.
  async #askHeadCount() {
    const asked = ++this.#headCountAsked;
    const room = this.#room;
    let text = '';
    try {
      const response = await fetch(`/api/rooms/${encodeURIComponent(room)}`, {
        headers: this.#token ? { Authorization: `Bearer ${this.#token}` } : {},
        cache: 'no-store',
      });
      if (response.ok) text = headCountText((await response.json()).members);
    } catch {
      // Offline or unreachable: the join will say so.
    }
    // Only the latest answer counts, and only while the room is the same.
    if (asked !== this.#headCountAsked || room !== this.#room) return;
    this.#headCount.hidden = !text;
    if (this.#headCount.textContent !== text) this.#headCount.textContent = text;
  }

  async #toggleMic() {
    await this.#media.setMicEnabled(!this.#media.state.audio);
  }

  async #toggleCamera() {
    await this.#media.setCameraEnabled(!this.#media.state.camera);
  }

  #renderAvatar() {
    const name = this.#nameInput.value.trim() || 'You';
    this.#previewAvatar.textContent = initials(name);
    this.#previewAvatar.style.setProperty('--hue', String(hueFor(name)));
  }

  #renderMedia() {
    const { audio, video } = this.#media.state;
    const { started } = this.#media;
    this.#previewStarting.hidden = started;
    this.#micButton.disabled = !started;
    this.#cameraButton.disabled = !started;
    const track = this.#media.videoTrack;
    if (track !== this.#previewTrack) {
      this.#previewTrack = track;
      this.#preview.srcObject = track ? new MediaStream([track]) : null;
    }
    this.#preview.hidden = !video;
    this.#micLevel.setTrack(this.#media.audioTrack);
    this.#previewAvatar.hidden = video || !started;
    this.#renderAvatar();

    this.#micButton.replaceChildren(icon(audio ? 'mic' : 'mic-off'));
    this.#micButton.setAttribute('aria-label', audio ? 'Turn off microphone' : 'Turn on microphone');
    this.#micButton.classList.toggle('round-button--off', !audio);
    this.#cameraButton.replaceChildren(icon(video ? 'camera' : 'camera-off'));
    this.#cameraButton.setAttribute('aria-label', video ? 'Turn off camera' : 'Turn on camera');
    this.#cameraButton.classList.toggle('round-button--off', !video);

    const problem = mediaProblemMessage(this.#media.problems);
    this.#mediaNotice.hidden = !problem;
    this.#mediaNotice.textContent = problem ?? '';
  }
}
