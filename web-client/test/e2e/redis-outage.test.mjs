// Redis goes away under a call between two nodes and comes back empty: media
// keeps flowing, the page says honestly that its changes wait, and a mute
// pressed meanwhile reaches the other side once the node delivers again. And
// a person who joins after someone muted sees them muted. Both go through the
// call state the node keeps with the seat (`call-state`, then `peer-state` or
// `members`): the pages send no app-data for them.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  Stack,
  assertMediaKeepsFlowing,
  launchBrowser,
  openCaller,
  roomName,
  startNode,
  startRedis,
  waitFor,
  waitForMediaFromAll,
} from './harness.mjs';

const stack = new Stack();
let redis;
let browser;
let nodes;

before(async () => {
  [redis, browser] = await Promise.all([startRedis(stack), launchBrowser(stack)]);
  nodes = await Promise.all(['outage-a', 'outage-b'].map((id) => startNode(stack, { id, redisUrl: redis.url })));
});

after(() => stack.cleanup());

const pill = (caller) => caller.page.locator('#signaling-status');
const tileOf = (caller, peerId) => caller.page.locator(`.tile[data-peer="${peerId}"]`);
const isMuted = async (caller, peerId) => ((await tileOf(caller, peerId).getAttribute('class').catch(() => '')) ?? '').includes('tile--muted');
/** The call state `caller`'s page was told of `peerId`, by the node (members, peer-state). */
const callStateOf = async (caller, peerId) => (await caller.state()).peers.find((peer) => peer.id === peerId)?.callState;

/** Counts the app-data messages the page sends from now on. */
async function countAppData(caller) {
  await caller.page.evaluate(() => {
    const client = window.__vc.call.client;
    window.__appDataSent = 0;
    const send = client.sendAppData.bind(client);
    client.sendAppData = (...args) => {
      window.__appDataSent += 1;
      return send(...args);
    };
  });
  return () => caller.page.evaluate(() => window.__appDataSent);
}

test('a mute pressed while Redis is away reaches the other node’s page when it is back; the status says so meanwhile', async (t) => {
  const room = roomName('outage');
  const ann = await openCaller(browser, `${nodes[0].url}/r/${room}`, 'Ann Lee');
  const bob = await openCaller(browser, `${nodes[1].url}/r/${room}`, 'Bob Stone');
  t.after(() => Promise.all([ann.close(), bob.close()]));
  await ann.join();
  await bob.join();
  const [annMedia, bobMedia] = await Promise.all([waitForMediaFromAll(ann, 1), waitForMediaFromAll(bob, 1)]);
  assert.equal((await ann.state()).node, 'outage-a');
  assert.equal((await bob.state()).node, 'outage-b');
  const annId = (await ann.state()).peerId;
  assert.equal(await isMuted(bob, annId), false);
  assert.equal(await pill(ann).isVisible(), false, 'no pill while all is well');
  assert.equal((await ann.page.evaluate(() => window.__vc.call.client.revision)), 4);
  const annAppData = await countAppData(ann);

  // Closing the launcher's stdin stops its redis-server at once (SIGKILL).
  await redis.service.stop();
  const downAt = Date.now();
  await ann.page.click('#toggle-mic');
  assert.equal((await ann.state()).media.audio, false, 'Ann is muted on her side');

  // The node refuses the mute: the page says the call goes on and the change waits.
  await waitFor(async () => (await pill(ann).getAttribute('data-delivery')) === 'refused', {
    message: 'Ann’s page to learn that the node refuses',
  });
  assert.equal(await pill(ann).isVisible(), true);
  assert.equal(await pill(ann).getAttribute('aria-live'), 'polite');
  const text = await pill(ann).innerText();
  assert.equal(
    text,
    'Your call continues. The server isn’t passing changes on right now. Changes you make will reach the others when it’s back.',
  );
  assert.doesNotMatch(text, /Connected|Connection lost/);
  await Promise.all([assertMediaKeepsFlowing(ann, annMedia.stats), assertMediaKeepsFlowing(bob, bobMedia.stats)]);
  assert.equal(await isMuted(bob, annId), false, 'the mute has not reached Bob while Redis is away');

  // Back after 6 s, empty.
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, 6000 - (Date.now() - downAt))));
  redis = await startRedis(stack, { port: redis.port });
  const backAt = Date.now();

  await waitFor(() => isMuted(bob, annId), { timeoutMs: 20_000, message: 'Bob to see Ann muted' });
  assert.deepEqual(await callStateOf(bob, annId), { hand: false, muted: true, cameraOff: false, sharing: false });
  assert.equal(await annAppData(), 0, 'the mute went as call state, not app-data');
  const label = await tileOf(bob, annId).locator('.tile-name-text').getAttribute('aria-label').catch(() => null);
  t.diagnostic(`mute seen on the other node ${Date.now() - backAt} ms after Redis came back; tile label: ${label}`);
  await waitFor(async () => (await pill(ann).getAttribute('data-delivery')) === 'ok' && !(await pill(ann).isVisible()), {
    timeoutMs: 15_000,
    message: 'Ann’s status to go back to normal',
  });
  assert.equal((await ann.state()).signaling, 'connected');
  assert.equal((await ann.state()).peers.length, 1, 'nobody left');
  assert.equal((await bob.state()).peers.length, 1, 'nobody left');
});

test('a person who joins after someone muted, turned the camera off and shared the screen sees all three', async (t) => {
  const room = roomName('late');
  const ann = await openCaller(browser, `${nodes[0].url}/r/${room}`, 'Ann Lee');
  t.after(() => ann.close());
  await ann.join();
  const annAppData = await countAppData(ann);
  await ann.page.click('#toggle-mic');
  await ann.page.click('#toggle-camera');
  await ann.page.click('#toggle-screen');
  await waitFor(async () => (await ann.state()).media.screen, { message: 'Ann to share her screen' });
  const annId = (await ann.state()).peerId;

  const cleo = await openCaller(browser, `${nodes[1].url}/r/${room}`, 'Cleo Park');
  t.after(() => cleo.close());
  await cleo.join();
  // From Cleo's joined.members, before any message from Ann's page could reach her.
  assert.deepEqual(await callStateOf(cleo, annId), { hand: false, muted: true, cameraOff: true, sharing: true });
  await waitFor(() => isMuted(cleo, annId), { message: 'Cleo to see Ann muted' });
  await waitFor(async () => (await tileOf(cleo, annId).getAttribute('class')).includes('tile--camera-off'), {
    message: 'Cleo to see Ann’s camera off',
  });
  await waitFor(async () => (await tileOf(cleo, `${annId}:screen`).count()) === 1, {
    timeoutMs: 20_000,
    message: 'Cleo to see Ann’s shared screen on a tile of its own',
  });
  const remote = (await cleo.state()).peers.find((peer) => peer.id === annId).remote;
  assert.deepEqual(remote, { audio: false, video: false, screen: true });
  assert.equal(await annAppData(), 0, 'Ann’s page sent her state as call state only');
});
