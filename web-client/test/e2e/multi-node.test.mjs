// A fleet: nodes sharing a Redis bus, nginx in front. Calls across nodes, a node
// killed under a call, and a node draining.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  Stack,
  assertMediaKeepsFlowing,
  launchBrowser,
  openCaller,
  roomName,
  startNginx,
  startNode,
  startRedis,
  waitFor,
  waitForMediaFromAll,
} from './harness.mjs';

const stack = new Stack();
let redis;
let browser;

before(async () => {
  [redis, browser] = await Promise.all([startRedis(stack), launchBrowser(stack)]);
});

after(() => stack.cleanup());

/** Nodes on the shared bus, with nginx in front of them. */
async function fleet(ids) {
  const nodes = await Promise.all(ids.map((id) => startNode(stack, { id, redisUrl: redis.url })));
  const balancer = await startNginx(stack, nodes);
  return { nodes, balancer };
}

async function pair(t, urlForAnn, urlForBob) {
  const room = roomName('fleet');
  const ann = await openCaller(browser, `${urlForAnn}/r/${room}`, 'Ann Lee');
  const bob = await openCaller(browser, `${urlForBob}/r/${room}`, 'Bob Stone');
  t.after(() => Promise.all([ann.close(), bob.close()]));
  await ann.join();
  await bob.join();
  const [annMedia, bobMedia] = await Promise.all([waitForMediaFromAll(ann, 1), waitForMediaFromAll(bob, 1)]);
  return { ann, bob, annMedia, bobMedia };
}

const statusOf = (caller) => caller.page.locator('#signaling-status').getAttribute('data-state');

test('1:1 call with the two people on different nodes', async (t) => {
  const [nodeA, nodeB] = await Promise.all([
    startNode(stack, { id: 'cross-a', redisUrl: redis.url }),
    startNode(stack, { id: 'cross-b', redisUrl: redis.url }),
  ]);
  const { ann, bob, annMedia, bobMedia } = await pair(t, nodeA.url, nodeB.url);
  assert.equal((await ann.state()).node, 'cross-a');
  assert.equal((await bob.state()).node, 'cross-b');
  t.diagnostic(
    `join to first decoded frame across nodes: Bob ${bobMedia.firstMediaAt - bob.joinedAt} ms, Ann ${annMedia.firstMediaAt - bob.joinedAt} ms`,
  );
});

test("the node under a page is killed: media keeps flowing, the page resumes on another node and renegotiates", async (t) => {
  const { nodes, balancer } = await fleet(['kill-a', 'kill-b', 'kill-c']);
  const { ann, bob, annMedia, bobMedia } = await pair(t, balancer.url, balancer.url);
  const before = await ann.state();
  const victim = nodes.find((node) => node.id === before.node);

  await victim.service.stop('SIGKILL');
  await waitFor(async () => (await statusOf(ann)) === 'reconnecting' || (await ann.state()).node !== victim.id, {
    message: 'Ann to notice the lost node',
  });
  // The call does not depend on signaling: both directions go on while Ann is away.
  await Promise.all([assertMediaKeepsFlowing(ann, annMedia.stats), assertMediaKeepsFlowing(bob, bobMedia.stats)]);

  const after = await waitFor(
    async () => {
      const state = await ann.state();
      return state.signaling === 'connected' && state.node !== victim.id ? state : false;
    },
    { timeoutMs: 15_000, message: 'Ann to resume on another node' },
  );
  assert.equal(after.peerId, before.peerId, 'resumed as the same peer');
  assert.equal((await bob.state()).peers.length, 1, 'Bob never saw Ann leave');
  assert.equal(await statusOf(ann), 'connected');

  // Negotiation works over the new node: an ICE restart, then a screen share.
  const negotiated = (await bob.state()).peers[0].negotiations;
  await ann.page.evaluate(() => window.__vc.peerConnections()[0].link.restartIce());
  await waitFor(async () => (await bob.state()).peers[0].negotiations > negotiated, { message: 'the ICE restart to complete' });
  await ann.page.click('#toggle-screen');
  await waitFor(async () => (await bob.state()).peers[0].remote.screen === true, { message: 'Bob to see the share' });
  const sharing = await waitFor(
    async () => {
      const [stats] = await bob.mediaStats();
      return stats.frameWidth / stats.frameHeight > 1.7 ? [stats] : false;
    },
    { message: "Bob to decode Ann's screen" },
  );
  await assertMediaKeepsFlowing(bob, sharing);
  await assertMediaKeepsFlowing(ann, await ann.mediaStats());
});

test('a node drains: its pages move to another node without a visible reconnect', async (t) => {
  const { nodes, balancer } = await fleet(['drain-a', 'drain-b']);
  const { ann, bob, annMedia } = await pair(t, balancer.url, balancer.url);
  const before = await ann.state();
  const draining = nodes.find((node) => node.id === before.node);
  // Record every state the status pill takes from here on.
  await ann.page.evaluate(() => {
    window.__statusSeen = [];
    window.__drainNotices = 0;
    window.__vc.call.addEventListener('signaling', ({ detail }) => window.__statusSeen.push(detail.state));
    window.__vc.call.client.on('reconnect', () => {
      window.__drainNotices += 1;
    });
  });

  draining.service.kill('SIGTERM');
  const after = await waitFor(
    async () => {
      const state = await ann.state();
      return state.node !== draining.id && state.signaling === 'connected' ? state : false;
    },
    { timeoutMs: 20_000, message: 'Ann to move to the other node' },
  );
  assert.equal(after.peerId, before.peerId);
  assert.equal(await ann.page.evaluate(() => window.__drainNotices), 1, 'the node asked the page to move');
  assert.deepEqual(await ann.page.evaluate(() => window.__statusSeen), [], 'the handover never showed "reconnecting"');
  await assertMediaKeepsFlowing(ann, annMedia.stats);
  await draining.service.exited;
  assert.equal((await bob.state()).peers.length, 1);
  assert.equal((await ann.state()).peers.length, 1);
});
