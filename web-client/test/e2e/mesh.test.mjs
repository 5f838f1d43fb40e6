// A room of four as a full mesh: every one of the 12 directions carries media.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { Stack, launchBrowser, openCaller, roomName, startNode, waitFor, waitForMediaFromAll } from './harness.mjs';

const stack = new Stack();
let node;
let browser;

before(async () => {
  [node, browser] = await Promise.all([startNode(stack, { id: 'mesh' }), launchBrowser(stack)]);
});

after(() => stack.cleanup());

test('a room of 4: all 12 directions decode video; when one leaves the others update', { timeout: 120_000 }, async (t) => {
  const room = roomName('mesh');
  const names = ['Ann Lee', 'Bob Stone', 'Cleo Park', 'Dev Patel'];
  // Four encoders and twelve decoders on two cores: small frames keep it honest.
  const callers = [];
  for (const name of names) {
    callers.push(await openCaller(browser, `${node.url}/r/${room}?video=320x240`, name, { viewport: { width: 960, height: 600 } }));
  }
  t.after(() => Promise.all(callers.map((caller) => caller.close())));
  for (const caller of callers) await caller.join();
  const startedAt = Date.now();

  const results = await Promise.all(callers.map((caller) => waitForMediaFromAll(caller, 3, { timeoutMs: 60_000 })));
  t.diagnostic(`all 12 directions decoding ${Date.now() - startedAt} ms after the last join`);
  for (const [index, { stats }] of results.entries()) {
    const others = names.filter((_, i) => i !== index).sort();
    assert.deepEqual(stats.map((s) => s.name).sort(), others, `${names[index]} receives from everyone else`);
  }

  const [leaver, ...stayers] = callers;
  await leaver.page.click('#leave-call');
  for (const caller of stayers) {
    await waitFor(async () => (await caller.page.locator('.tile').count()) === 3, {
      message: `${caller.name}'s grid to drop ${leaver.name}`,
    });
    const state = await caller.state();
    assert.equal(state.peers.length, 2);
    assert.ok(!state.peers.some((peer) => peer.name === leaver.name));
    assert.equal(await caller.page.locator('.people-count').innerText(), '3 people');
  }
  // The three left still talk to each other.
  await Promise.all(stayers.map((caller) => waitForMediaFromAll(caller, 2)));
});
