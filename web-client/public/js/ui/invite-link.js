// The invite link with its Copy button.

import { h } from './dom.js';
import { icon } from './icons.js';

const COPIED_MS = 2000;

async function copyText(text, fallbackInput) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // Without clipboard permission: select the text so that Ctrl+C or a long press works.
    fallbackInput?.focus();
    fallbackInput?.select();
    return false;
  }
}

/** A read-only field holding `url`, with a button that copies it. */
export function createInviteLink(url, { compact = false } = {}) {
  const input = h('input', {
    class: 'invite-url',
    type: 'text',
    readOnly: true,
    value: url,
    'aria-label': 'Invite link',
    onfocus: (event) => event.target.select(),
  });
  const label = h('span', { class: 'button-label' }, 'Copy link');
  const button = h('button', { type: 'button', class: 'button button--secondary invite-copy' }, icon('copy'), label);
  button.addEventListener('click', async () => {
    if (!(await copyText(input.value, input))) return;
    label.textContent = 'Copied';
    button.replaceChildren(icon('check'), label);
    setTimeout(() => {
      label.textContent = 'Copy link';
      button.replaceChildren(icon('copy'), label);
    }, COPIED_MS);
  });
  const element = h('div', { class: `invite${compact ? ' invite--compact' : ''}` }, input, button);
  return {
    element,
    setUrl(next) {
      input.value = next;
    },
  };
}

export { copyText };
