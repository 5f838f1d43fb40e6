// Chat, raised hands, reactions and the lobby's head count, as people see them,
// with Chromium and Firefox ESR in the same call: each engine sends what the
// other one shows. Run twice, the engines swapping places, so that the late
// joiner is once each. Asserts what is on the screen and in the live region a
// screen reader reads, and checks the chat panel with axe-core.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { Stack, accessibilityViolations, blocking, launchBrowser, launchFirefox, openCaller, roomName, startNode, waitFor } from './harness.mjs';

const stack = new Stack();
let node;
let chromium;
let firefox;
const axeResults = [];

before(async () => {
  [node, chromium, firefox] = await Promise.all([startNode(stack, { id: 'chat' }), launchBrowser(stack), launchFirefox(stack)]);
});

after(async () => {
  for (const { screen, all, serious } of axeResults) console.log(`axe ${screen}: ${all} violations, ${serious} serious or critical`);
  await stack.cleanup();
});

async function checkAccessibility(page, screen) {
  await page.evaluate(() => {
    for (const animation of document.getAnimations()) if (animation instanceof CSSTransition) animation.finish();
  });
  const violations = await accessibilityViolations(page);
  axeResults.push({ screen, all: violations.length, serious: blocking(violations).length });
  assert.deepEqual(blocking(violations), [], `serious or critical accessibility violations on ${screen}`);
}

// Only page.evaluate, click, focus and keyboard: the same steps drive Playwright and puppeteer.
const textOf = (caller, selector) => caller.page.evaluate((s) => document.querySelector(s)?.textContent ?? null, selector);
const shown = (caller, selector) =>
  caller.page.evaluate((s) => {
    const element = document.querySelector(s);
    return Boolean(element) && !element.closest('[hidden]') && element.getClientRects().length > 0;
  }, selector);
const peerId = async (caller) => (await caller.state()).peerId;
const chatLines = (caller) =>
  caller.page.evaluate(() =>
    [...document.querySelectorAll('#chat-messages .chat-message')].map((row) => ({
      name: row.querySelector('.chat-name').textContent,
      text: row.querySelector('.chat-text').textContent,
      markup: row.querySelector('.chat-text').children.length,
    })),
  );

async function lobbySays(caller, words) {
  await waitFor(async () => (await shown(caller, '#lobby-count')) && (await textOf(caller, '#lobby-count')) === words, {
    message: `${caller.name}'s lobby to say "${words}"`,
  });
}

for (const [first, second] of [
  ['chromium', 'firefox'],
  ['firefox', 'chromium'],
]) {
  test(`${first} and ${second}: chat with unread count and announcements, hands on every side, reactions over the sender's tile, a late joiner sees the chat so far`, async (t) => {
    const browsers = { chromium, firefox };
    const room = roomName(`chat-${first}`);
    const url = `${node.url}/r/${room}?video=160x120`;
    const ann = await openCaller(browsers[first], url, 'Ann Lee');
    t.after(() => ann.close());
    await lobbySays(ann, 'No one else is here yet');
    await ann.join();
    const bob = await openCaller(browsers[second], url, 'Bob Stone');
    t.after(() => bob.close());
    await lobbySays(bob, '1 person in the call');
    if (first === 'chromium') await checkAccessibility(bob.page, `lobby with the head count (${second})`);
    await bob.join();
    const [annId, bobId] = await Promise.all([peerId(ann), peerId(bob)]);
    await waitFor(async () => (await shown(ann, `.tile[data-peer="${bobId}"]`)) && shown(bob, `.tile[data-peer="${annId}"]`), {
      message: 'each tile on the other side',
    });

    // Ann writes by keyboard alone: C opens the chat with the cursor in the box, Enter sends.
    await ann.page.keyboard.press('c');
    await waitFor(() => ann.page.evaluate(() => document.activeElement?.id === 'chat-input'), { message: 'the cursor in the chat box' });
    await ann.page.keyboard.type('Hello from Ann');
    await ann.page.keyboard.press('Enter');
    await waitFor(async () => (await textOf(bob, '#chat-announcer'))?.includes('Ann Lee says: Hello from Ann'), {
      message: 'the message read out on Bob’s side',
    });
    assert.equal(await bob.page.evaluate(() => document.querySelector('#chat-announcer').getAttribute('aria-live')), 'polite');
    await waitFor(async () => (await shown(bob, '#toggle-chat .control-badge')) && (await textOf(bob, '#toggle-chat .control-badge')) === '1', {
      message: 'one unread message on Bob’s chat button',
    });
    assert.equal(await bob.page.evaluate(() => document.querySelector('#toggle-chat').getAttribute('aria-label')), 'Chat, 1 unread message');
    assert.deepEqual(await chatLines(ann), [{ name: 'You', text: 'Hello from Ann', markup: 0 }]);

    // Bob opens the chat: the message is there, the count gone; he answers with
    // something that looks like markup, which stays text.
    await bob.page.click('#toggle-chat');
    await waitFor(async () => (await chatLines(bob)).length === 1, { message: 'Ann’s message in Bob’s chat' });
    assert.deepEqual(await chatLines(bob), [{ name: 'Ann Lee', text: 'Hello from Ann', markup: 0 }]);
    assert.equal(await shown(bob, '#toggle-chat .control-badge'), false);
    await bob.page.focus('#chat-input');
    await bob.page.keyboard.type('<b>Hi</b> from Bob');
    await bob.page.keyboard.press('Enter');
    await waitFor(async () => (await chatLines(ann)).length === 2, { message: 'Bob’s answer in Ann’s open chat' });
    assert.deepEqual((await chatLines(ann))[1], { name: 'Bob Stone', text: '<b>Hi</b> from Bob', markup: 0 });
    assert.match(await textOf(ann, '#chat-announcer'), /Bob Stone says: <b>Hi<\/b> from Bob/);
    assert.equal(await shown(ann, '#toggle-chat .control-badge'), false, 'no unread count while the chat is open');
    await checkAccessibility(bob.page, `chat panel (${second})`);
    // Escape closes the chat and gives the focus back to its button.
    await bob.page.keyboard.press('Escape');
    await waitFor(() => bob.page.evaluate(() => document.activeElement?.id === 'toggle-chat'), { message: 'focus back on the chat button' });

    // Ann raises her hand: on her own tile, on her tile on Bob's side, in Bob's people panel.
    await ann.page.click('#toggle-hand');
    await waitFor(() => shown(bob, `.tile[data-peer="${annId}"] .tile-hand`), { message: 'Ann’s hand on Bob’s side' });
    assert.match(await textOf(bob, '.toasts'), /Ann Lee raised their hand/);
    assert.equal(await shown(ann, '.tile--local .tile-hand'), true);
    assert.equal(await ann.page.evaluate(() => document.querySelector('#toggle-hand').getAttribute('aria-pressed')), 'true');
    await bob.page.keyboard.press('p');
    await waitFor(
      async () => (await textOf(bob, `#people-panel li[data-peer="${annId}"] .person-state`))?.startsWith('Hand raised'),
      { message: 'the hand in Bob’s people panel' },
    );

    // Bob reacts: the emoji floats over Bob's tile on Ann's side, then goes.
    await bob.page.click('#toggle-reactions');
    await bob.page.click('.reaction-button[data-emoji="🎉"]');
    await waitFor(async () => (await textOf(ann, `.tile[data-peer="${bobId}"] .tile-reaction`)) === '🎉', {
      message: 'the reaction over Bob’s tile on Ann’s side',
    });
    assert.equal(await shown(ann, `.tile[data-peer="${bobId}"] .tile-reaction`), true);
    assert.match(await textOf(ann, '#chat-announcer'), /Bob Stone reacted with celebration/);
    await waitFor(async () => (await textOf(ann, `.tile[data-peer="${bobId}"] .tile-reaction`)) === null, {
      timeoutMs: 6000,
      message: 'the reaction to go after a few seconds',
    });

    // Cleo comes late: the lobby counts two, the chat so far waits for her
    // (unread), and Ann's hand is up on her side too.
    const cleo = await openCaller(browsers[second], url, 'Cleo Park');
    t.after(() => cleo.close());
    await lobbySays(cleo, '2 people in the call');
    await cleo.join();
    await waitFor(() => shown(cleo, `.tile[data-peer="${annId}"] .tile-hand`), { message: 'Ann’s hand on Cleo’s side' });
    await waitFor(async () => (await textOf(cleo, '#toggle-chat .control-badge')) === '2', { message: 'two unread on Cleo’s side' });
    await cleo.page.click('#toggle-chat');
    assert.deepEqual(await chatLines(cleo), [
      { name: 'Ann Lee', text: 'Hello from Ann', markup: 0 },
      { name: 'Bob Stone', text: '<b>Hi</b> from Bob', markup: 0 },
    ]);

    // The hand goes down everywhere.
    await ann.page.click('#toggle-hand');
    await waitFor(
      async () => !(await shown(bob, `.tile[data-peer="${annId}"] .tile-hand`)) && !(await shown(cleo, `.tile[data-peer="${annId}"] .tile-hand`)),
      { message: 'Ann’s hand down on both other sides' },
    );
    for (const caller of [ann, bob, cleo]) assert.deepEqual(caller.errors, [], `${caller.name}'s page threw`);
  });
}
