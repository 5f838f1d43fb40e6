// A call that may only use TURN relays, through a local coturn that trusts the
// credentials the node mints per join.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';

import { Stack, launchBrowser, openCaller, roomName, startNode, startTurn, waitForMediaFromAll } from './harness.mjs';

const stack = new Stack();
let node;
let turn;
let browser;

before(async () => {
  const secret = randomBytes(24).toString('hex');
  turn = await startTurn(stack, { secret });
  [node, browser] = await Promise.all([
    startNode(stack, { id: 'relay', env: { VC_ICE__TURN_URLS: turn.url, VC_ICE__TURN_SECRET: secret } }),
    launchBrowser(stack),
  ]);
});

after(() => stack.cleanup());

test('relay-only call through coturn with credentials minted by the node', async (t) => {
  const room = roomName('relay');
  const ann = await openCaller(browser, `${node.url}/r/${room}?relay=1`, 'Ann Lee');
  const bob = await openCaller(browser, `${node.url}/r/${room}?relay=1`, 'Bob Stone');
  t.after(() => Promise.all([ann.close(), bob.close()]));
  await ann.join();
  await bob.join();

  const iceServers = await ann.page.evaluate(() => window.__vc.call.client.iceServers);
  const turnEntry = iceServers.find((server) => server.urls.some((url) => url.startsWith('turn:')));
  assert.ok(turnEntry, `the node hands out the TURN server: ${JSON.stringify(iceServers)}`);
  assert.match(turnEntry.username, new RegExp(`^\\d+:${(await ann.state()).peerId}$`));
  assert.ok(turnEntry.credential);
  const configured = await ann.page.evaluate(() => window.__vc.peerConnections()[0].pc.getConfiguration());
  assert.equal(configured.iceTransportPolicy, 'relay');

  const [annMedia, bobMedia] = await Promise.all([
    waitForMediaFromAll(ann, 1, { timeoutMs: 30_000 }),
    waitForMediaFromAll(bob, 1, { timeoutMs: 30_000 }),
  ]);
  t.diagnostic(`join to first decoded frame over TURN: Bob ${bobMedia.firstMediaAt - bob.joinedAt} ms`);
  for (const [who, media] of [
    ['Ann', annMedia],
    ['Bob', bobMedia],
  ]) {
    assert.equal(media.stats[0].localCandidateType, 'relay', `${who}'s selected pair uses a relay`);
    assert.equal(media.stats[0].remoteCandidateType, 'relay', `${who} reaches the other side's relay`);
  }
});
