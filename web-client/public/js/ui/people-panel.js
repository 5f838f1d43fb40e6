// The people in the call, with what the page knows of each: a raised hand,
// microphone, camera, presenting, speaking, and the safety code of the
// connection to them.

import { h } from './dom.js';
import { icon } from './icons.js';

export class PeoplePanel {
  #list;
  #heading;
  #onPin;
  #rows = new Map();

  /** @param {{onPin: (peerId: string) => void, onClose: () => void}} handlers */
  constructor({ onPin, onClose }) {
    this.#onPin = onPin;
    this.#heading = h('h2', { id: 'people-title' }, 'People');
    this.#list = h('ul', { class: 'people-list' });
    this.element = h(
      'aside',
      { class: 'side-panel people-panel', id: 'people-panel', 'aria-labelledby': 'people-title', hidden: true },
      h(
        'div',
        { class: 'side-panel-head' },
        this.#heading,
        h('button', { type: 'button', class: 'icon-button', 'aria-label': 'Close the people panel', onclick: onClose }, icon('close')),
      ),
      this.#list,
      h(
        'p',
        { class: 'people-note' },
        'The safety code is the same on both sides of a connection that nobody sits in the middle of. Read it out to the other person: if it differs, hang up.',
      ),
    );
  }

  get open() {
    return !this.element.hidden;
  }

  set open(open) {
    this.element.hidden = !open;
  }

  /**
   * @param {{id: string, name: string, local: boolean, audio: boolean, video: boolean, screen: boolean,
   *   hand: boolean, speaking: boolean, pinned: boolean, safetyCode: string|null}[]} people
   */
  render(people) {
    this.#heading.textContent = `People (${people.length})`;
    const ids = new Set(people.map((person) => person.id));
    for (const [id, row] of this.#rows) {
      if (!ids.has(id)) {
        row.element.remove();
        this.#rows.delete(id);
      }
    }
    // Rows are updated in place, so that a focused Pin button keeps its focus.
    for (const person of people) {
      let row = this.#rows.get(person.id);
      if (!row) {
        row = this.#createRow(person);
        this.#rows.set(person.id, row);
      }
      this.#list.append(row.element);
      this.#updateRow(row, person);
    }
  }

  #createRow(person) {
    const row = {
      name: h('span', { class: 'person-name' }),
      icons: h('span', { class: 'person-icons', 'aria-hidden': 'true' }),
      state: h('p', { class: 'person-state' }),
      code: person.local ? null : h('strong', { class: 'safety-code' }),
      pinLabel: h('span', { class: 'button-label' }),
      pin: null,
    };
    if (!person.local) {
      row.pin = h(
        'button',
        { type: 'button', class: 'button button--ghost person-pin', onclick: () => this.#onPin(person.id) },
        icon('pin'),
        row.pinLabel,
      );
    }
    row.element = h(
      'li',
      { class: 'person', 'data-peer': person.id },
      h('div', { class: 'person-main' }, row.name, row.icons, row.pin),
      row.state,
      row.code ? h('p', { class: 'person-code' }, 'Safety code ', row.code) : null,
    );
    return row;
  }

  #updateRow(row, person) {
    row.element.classList.toggle('person--speaking', person.speaking);
    row.element.classList.toggle('person--hand', Boolean(person.hand));
    row.name.textContent = person.local ? `${person.name} (you)` : person.name;
    row.icons.replaceChildren(
      ...(person.hand ? [h('span', { class: 'person-hand' }, '\u270b')] : []),
      icon(person.audio ? 'mic' : 'mic-off', `icon${person.audio ? '' : ' icon--off'}`),
      icon(person.video ? 'camera' : 'camera-off', `icon${person.video ? '' : ' icon--off'}`),
    );
    row.state.textContent = [
      person.hand ? 'Hand raised' : null,
      person.audio ? 'Microphone on' : 'Muted',
      person.video ? 'Camera on' : 'Camera off',
      person.screen ? 'Presenting' : null,
      person.speaking ? 'Speaking' : null,
    ]
      .filter(Boolean)
      .join(' \u00b7 ');
    if (row.code) row.code.textContent = person.safetyCode ?? 'not yet known';
    if (row.pin) {
      row.pin.setAttribute('aria-pressed', String(person.pinned));
      row.pin.setAttribute('aria-label', person.pinned ? `Unpin ${person.name}` : `Pin ${person.name} to the stage`);
      row.pinLabel.textContent = person.pinned ? 'Unpin' : 'Pin';
    }
  }
}
