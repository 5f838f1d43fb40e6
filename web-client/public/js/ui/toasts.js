// Short-lived notices ("Ann joined"), read out by screen readers as they appear.

import { h } from './dom.js';
import { icon } from './icons.js';

const VISIBLE_MS = 4000;
const MAX_VISIBLE = 3;

export class Toasts {
  constructor() {
    this.element = h('div', { class: 'toasts', role: 'status', 'aria-live': 'polite' });
  }

  show(text, { tone = 'info' } = {}) {
    const toast = h('div', { class: `toast toast--${tone}` }, tone === 'warn' ? icon('warning') : null, h('span', {}, text));
    this.element.append(toast);
    while (this.element.children.length > MAX_VISIBLE) this.element.firstElementChild.remove();
    setTimeout(() => toast.remove(), VISIBLE_MS);
  }
}
