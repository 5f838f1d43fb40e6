// A full-page message with a way forward: after leaving, or when a call was lost.

import { h } from './dom.js';
import { icon } from './icons.js';

/**
 * @param {{title: string, body: string, tone?: 'info'|'warn', actions: {label: string, onClick: () => void, primary?: boolean}[]}} options
 */
export function createNoticeScreen({ title, body, tone = 'info', actions }) {
  const buttons = actions.map(({ label, onClick, primary }) =>
    h('button', { type: 'button', class: `button ${primary ? 'button--primary' : 'button--secondary'} button--large`, onclick: onClick }, label),
  );
  const element = h(
    'main',
    { class: 'notice', id: 'main', tabIndex: -1 },
    h(
      'section',
      { class: `notice-card notice-card--${tone}`, role: tone === 'warn' ? 'alert' : null, 'aria-labelledby': 'notice-title' },
      tone === 'warn' ? icon('warning', 'icon notice-icon') : null,
      h('h1', { id: 'notice-title' }, title),
      h('p', {}, body),
      h('div', { class: 'notice-actions' }, buttons),
    ),
  );
  return { element, focus: () => buttons[0]?.focus() };
}
