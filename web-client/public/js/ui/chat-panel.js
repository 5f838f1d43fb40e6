// The chat of the call: the messages so far (a late joiner sees those the node
// kept), a box to write in, and a live region that reads new messages out to
// screen readers whether the panel is open or not. Text is only ever set as
// text: what people write is never markup.

import { h } from './dom.js';
import { icon } from './icons.js';
import { chatErrorText } from './messages.js';

const TIME = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });

export class ChatPanel {
  #list;
  #input;
  #hint;
  #empty;
  #form;
  #onSend;
  #maxBytes;
  #rows = new Map();
  /** Read out by screen readers: each new message from someone else, and hand changes. */
  announcer;

  /**
   * @param {{onSend: (text: string) => void, onClose: () => void, maxBytes: number}} options
   *   onSend may throw a RangeError (`empty`, `too-long`) for a text it will not send
   */
  constructor({ onSend, onClose, maxBytes }) {
    this.#onSend = onSend;
    this.#maxBytes = maxBytes;
    this.#list = h('ol', { class: 'chat-list', id: 'chat-messages', 'aria-labelledby': 'chat-title', tabIndex: 0 });
    this.#empty = h('p', { class: 'chat-empty' }, 'No messages yet. Everyone in the call sees what you write here, and so do those who join later.');
    this.#input = h('textarea', {
      id: 'chat-input',
      class: 'chat-input',
      rows: 2,
      'aria-describedby': 'chat-hint',
      placeholder: 'Message everyone',
      autocomplete: 'off',
    });
    this.#hint = h('p', { class: 'chat-hint', id: 'chat-hint' }, 'Enter sends, Shift+Enter starts a new line.');
    this.#form = h(
      'form',
      { class: 'chat-form', novalidate: true },
      h('label', { for: 'chat-input', class: 'visually-hidden' }, 'Message to everyone'),
      this.#input,
      h('button', { type: 'submit', class: 'button button--primary chat-send', id: 'chat-send' }, 'Send'),
      this.#hint,
    );
    this.#form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.#send();
    });
    this.#input.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.#send();
      }
    });
    this.#input.addEventListener('input', () => this.#setHint(null));
    this.announcer = h('div', { class: 'visually-hidden', id: 'chat-announcer', role: 'status', 'aria-live': 'polite' });
    this.element = h(
      'aside',
      { class: 'side-panel chat-panel', id: 'chat-panel', 'aria-labelledby': 'chat-title', hidden: true },
      h(
        'div',
        { class: 'side-panel-head' },
        h('h2', { id: 'chat-title' }, 'Chat'),
        h('button', { type: 'button', class: 'icon-button', 'aria-label': 'Close the chat', onclick: onClose }, icon('close')),
      ),
      this.#empty,
      this.#list,
      this.#form,
    );
    this.element.addEventListener('keydown', (event) => {
      if (event.key === 'Escape') {
        event.preventDefault();
        onClose();
      }
    });
  }

  get open() {
    return !this.element.hidden;
  }

  set open(open) {
    this.element.hidden = !open;
    if (open) this.#scrollToEnd();
  }

  focusInput() {
    this.#input.focus();
  }

  /** Shows a message, or updates it (an own message refused by the node). */
  show(message) {
    let row = this.#rows.get(message);
    if (!row) {
      row = this.#createRow(message);
      this.#rows.set(message, row);
      this.#list.append(row);
      // The node keeps 50; the page keeps more, but not without end.
      while (this.#list.children.length > 200) {
        const first = this.#list.firstElementChild;
        for (const [key, value] of this.#rows) if (value === first) this.#rows.delete(key);
        first.remove();
      }
    }
    row.classList.toggle('chat-message--failed', message.failed);
    row.querySelector('.chat-failed').hidden = !message.failed;
    this.#empty.hidden = true;
    this.#scrollToEnd();
  }

  /** Reads `text` out to screen readers. */
  announce(text) {
    // A fresh node per announcement: the same text twice is read twice.
    this.announcer.replaceChildren(h('p', {}, text));
  }

  failed(message, code) {
    this.show(message);
    this.#setHint(chatErrorText(code), 'warn');
  }

  #createRow(message) {
    const when = new Date(message.at);
    return h(
      'li',
      { class: `chat-message${message.own ? ' chat-message--own' : ''}`, 'data-from': message.from ?? '' },
      h(
        'p',
        { class: 'chat-meta' },
        h('span', { class: 'chat-name' }, message.own ? 'You' : message.name),
        ' ',
        h('time', { class: 'chat-time', dateTime: when.toISOString() }, TIME.format(when)),
      ),
      // dir=auto and an isolated box: right-to-left text, or direction marks,
      // cannot reorder what is around the message.
      h('p', { class: 'chat-text', dir: 'auto' }, message.text),
      h('p', { class: 'chat-failed', hidden: true }, 'Not sent'),
    );
  }

  #send() {
    const text = this.#input.value;
    try {
      this.#onSend(text);
    } catch (err) {
      if (!(err instanceof RangeError)) throw err;
      this.#setHint(err.message === 'too-long' ? `That message is too long: at most ${this.#maxBytes} bytes.` : 'Write something first.', 'warn');
      return;
    }
    this.#input.value = '';
    this.#setHint(null);
  }

  #setHint(text, tone) {
    this.#hint.textContent = text ?? 'Enter sends, Shift+Enter starts a new line.';
    if (tone) this.#hint.dataset.tone = tone;
    else delete this.#hint.dataset.tone;
    if (tone) this.#input.setAttribute('aria-invalid', 'true');
    else this.#input.removeAttribute('aria-invalid');
  }

  #scrollToEnd() {
    if (this.open) this.#list.scrollTop = this.#list.scrollHeight;
  }
}
