// Messages the node refuses for now (`unavailable`: its bus is down; `draining`)
// are kept by the signaling client and sent again, in order, until they get
// through or a bound is passed; `delivery` and `undelivered` tell the page.

import { afterEach, test } from 'node:test';
import assert from 'node:assert/strict';

import { DEFAULT_REDELIVERY } from '../../public/lib/signaling-client.js';
import { eventually, tick } from './fake-network.mjs';
import { joinedClient, resumedReply } from './helpers.mjs';

// No liveness pings: every `ping` in these tests is the client's own test of delivery.
const FAST = { initialMs: 20, maxMs: 40 };

/** What each test opened, closed after it whether it passed or not, so that a failed test cannot keep the file running. */
const opened = [];
afterEach(async () => {
  for (const { client, box } of opened.splice(0)) {
    box.stop();
    await client.close().catch(() => {});
  }
});

async function joined(redelivery = {}) {
  const setup = await joinedClient({ liveness: { intervalMs: 0 }, redelivery: { ...FAST, ...redelivery } });
  const box = mailbox(setup.server);
  opened.push({ client: setup.client, box });
  return { ...setup, box };
}

const refuse = (server, message, code = 'unavailable') =>
  server.send({ type: 'error', code, message: 'the cluster bus is unavailable, try again shortly', id: message.id });

/**
 * What the client sends on `server`, in order, with its pings set apart: the
 * test answers them when it chooses, so that a refusal can come before the
 * `pong` that would say a message got through.
 */
function mailbox(server) {
  const messages = [];
  const pings = [];
  let stopped = false;
  (async () => {
    while (!stopped) {
      const message = await server.received.next(200).catch(() => null);
      if (!message && server.closeCode !== null) return;
      if (!message) continue;
      (message.type === 'ping' ? pings : messages).push(message);
    }
  })();
  return {
    async take(type) {
      await eventually(() => messages.length > 0, { message: `a ${type}` });
      const message = messages.shift();
      assert.equal(message.type, type, `expected ${type}, got ${JSON.stringify(message)}`);
      return message;
    },
    /** Waits for a ping, then answers every ping sent so far. */
    async pongAll() {
      await tick();
      await eventually(() => pings.length > 0, { message: 'a ping' });
      for (const ping of pings.splice(0)) server.send({ type: 'pong', id: ping.id });
    },
    get pending() {
      return messages.length;
    },
    stop() {
      stopped = true;
    },
  };
}

test('the default bounds: 30 s and 200 messages', () => {
  assert.equal(DEFAULT_REDELIVERY.maxAgeMs, 30_000);
  assert.equal(DEFAULT_REDELIVERY.maxHeld, 200);
});

test('a refused relay is sent again with its id, a ping behind it, and what queued behind it follows in order', async () => {
  const { client, server, box, eventsOf } = await joined({ initialMs: 100, maxMs: 100 });
  const first = client.sendAppData('p-bob', { n: 1 });
  const sent = await box.take('app-data');
  assert.equal(sent.id, first);
  refuse(server, sent);
  await eventually(() => client.delivery.state === 'refused', { message: 'the refusal' });
  assert.deepEqual(client.delivery, { state: 'refused', held: 1 });
  assert.equal(eventsOf('error').length, 0, 'a refusal for now is no error for the page');

  // Later messages for Bob wait behind the refused one; Cleo's go out at once.
  client.sendAppData('p-bob', { n: 2 });
  client.sendCandidate('p-bob', null);
  client.sendAppData('p-cleo', { n: 3 });
  assert.equal(client.delivery.held, 3);
  assert.deepEqual((await box.take('app-data')).data, { n: 3 });

  // After the backoff: the oldest alone, and a ping to learn whether it got through.
  const again = await box.take('app-data');
  assert.equal(again.id, first, 'the same request id');
  assert.deepEqual(again.data, { n: 1 });
  await box.pongAll();
  assert.deepEqual((await box.take('app-data')).data, { n: 2 });
  assert.equal((await box.take('candidate')).candidate, null);
  await box.pongAll();
  await eventually(() => client.delivery.state === 'ok', { message: 'delivery to be ok again' });
  assert.deepEqual(client.delivery, { state: 'ok', held: 0 });
  const told = eventsOf('delivery').map((d) => d.state);
  assert.equal(told[0], 'refused');
  assert.equal(told.at(-1), 'ok');
  assert.equal(told.indexOf('ok'), told.length - 1, 'ok only once everything got through');
  assert.equal(eventsOf('undelivered').length, 0);
  await client.close();
});

test('refused again: it stays first, and the next try waits longer', async () => {
  const { client, server, box } = await joined();
  client.sendOffer('p-bob', 'v=0 1');
  const offer = await box.take('offer');
  // Sent before the refusal came back, so refused as well.
  client.sendAnswer('p-bob', 'v=0 2');
  const answer = await box.take('answer');
  refuse(server, offer);
  refuse(server, answer);
  for (let attempt = 0; attempt < 3; attempt += 1) {
    const again = await box.take('offer');
    assert.equal(again.sdp, 'v=0 1');
    refuse(server, again);
    await box.pongAll();
  }
  const last = await box.take('offer');
  await box.pongAll();
  assert.equal(last.sdp, 'v=0 1');
  assert.equal((await box.take('answer')).sdp, 'v=0 2', 'never before the offer it follows');
  await client.close();
});

test('the newest state wins: a held state of the same kind and target is replaced', async () => {
  const { client, server, box, eventsOf } = await joined({ initialMs: 200, maxMs: 200 });
  client.sendAppData('p-bob', { audio: true }, { state: true });
  refuse(server, await box.take('app-data'));
  await eventually(() => client.delivery.held === 1, { message: 'held' });
  client.sendAppData('p-bob', { audio: false }, { state: true });
  client.sendAppData('p-bob', { note: 'not a state' });
  const newest = client.sendAppData('p-bob', { audio: false, video: false }, { state: true });
  client.setCallState({ hand: true });
  const hand = await box.take('call-state');
  refuse(server, hand);
  await eventually(() => client.delivery.held === 3, { message: 'three held' });
  const lowered = client.setCallState({ hand: false, muted: true });
  assert.equal(client.delivery.held, 3, 'the lowered hand replaced the raised one');

  const first = await box.take('app-data');
  assert.deepEqual(first.data, { note: 'not a state' });
  await box.pongAll();
  const state = await box.take('app-data');
  assert.equal(state.id, newest);
  assert.deepEqual(state.data, { audio: false, video: false });
  // The newest holds the whole state: nothing of the one it replaced is lost.
  assert.deepEqual(await box.take('call-state'), {
    type: 'call-state',
    hand: false,
    muted: true,
    cameraOff: false,
    sharing: false,
    id: lowered,
  });
  assert.equal(eventsOf('undelivered').length, 0, 'a replaced state is no loss');
  await client.close();
});

test('past the age bound a message is given up and the page is told', async () => {
  const { client, server, box, eventsOf } = await joined({ maxAgeMs: 150 });
  const chatId = client.sendChat('hello');
  refuse(server, await box.take('chat'));
  while (!eventsOf('undelivered').length) {
    await eventually(() => eventsOf('undelivered').length || box.pending, { message: 'a retry or the giving up' });
    if (!box.pending) break;
    refuse(server, await box.take('chat'));
    await box.pongAll();
  }
  const [given] = eventsOf('undelivered');
  assert.equal(given.requestId, chatId);
  assert.equal(given.reason, 'expired');
  assert.equal(given.code, 'unavailable');
  assert.equal(given.message.text, 'hello');
  assert.deepEqual(client.delivery, { state: 'refused', held: 0 }, 'still refused: nothing has got through since');
  await client.close();
});

test('past the count bound the oldest is given up', async () => {
  const { client, server, box, eventsOf } = await joined({ initialMs: 1000, maxMs: 1000, maxHeld: 2 });
  const oldest = client.sendCandidate('p-bob', { candidate: 'candidate:1' });
  refuse(server, await box.take('candidate'));
  await eventually(() => client.delivery.held === 1, { message: 'held' });
  client.sendCandidate('p-bob', { candidate: 'candidate:2' });
  client.sendCandidate('p-bob', { candidate: 'candidate:3' });
  assert.equal(client.delivery.held, 2);
  assert.deepEqual(
    eventsOf('undelivered').map(({ requestId, reason }) => ({ requestId, reason })),
    [{ requestId: oldest, reason: 'overflow' }],
  );
  await client.close();
});

test('a refusal for good is reported as before and not sent again', async () => {
  const { client, server, eventsOf } = await joined();
  const id = client.sendOffer('p-gone', 'v=0');
  server.send({ type: 'error', code: 'unknown-peer', message: 'no such peer', id });
  await eventually(() => eventsOf('error').length === 1, { message: 'the error' });
  assert.equal(eventsOf('error')[0].requestId, id);
  assert.deepEqual(client.delivery, { state: 'ok', held: 0 });
  await client.close();
});

test('what waits for a peer that leaves is dropped', async () => {
  const { client, server, box, eventsOf } = await joined({ initialMs: 1000, maxMs: 1000 });
  client.sendAppData('p-bob', { n: 1 });
  refuse(server, await box.take('app-data'));
  await eventually(() => client.delivery.held === 1, { message: 'held' });
  server.send({ type: 'peer-left', peer: 'p-bob', reason: 'left' });
  await eventually(() => client.delivery.held === 0, { message: 'dropped' });
  assert.equal(eventsOf('undelivered').length, 0, 'nobody is left to tell');
  await client.close();
});

test('after a resume on another socket what was refused goes out there, before what queued meanwhile', async () => {
  const { network, client, server, box } = await joined({ initialMs: 60_000, maxMs: 60_000 });
  client.sendAppData('p-bob', { n: 1 });
  refuse(server, await box.take('app-data'), 'draining');
  await eventually(() => client.delivery.held === 1, { message: 'held' });
  server.drop(1006);
  await eventually(() => client.state === 'reconnecting', { message: 'reconnecting' });
  client.sendAppData('p-bob', { n: 2 });
  client.sendAppData('p-cleo', { n: 3 });

  const next = await network.nextConnection();
  next.welcome('node-b');
  const nextBox = mailbox(next);
  next.send(resumedReply(await nextBox.take('resume')));
  assert.deepEqual((await nextBox.take('app-data')).data, { n: 3 });
  assert.deepEqual((await nextBox.take('app-data')).data, { n: 1 }, 'no backoff wait after a resume');
  await nextBox.pongAll();
  assert.deepEqual((await nextBox.take('app-data')).data, { n: 2 });
  await client.close();
});

test('the socket ends while a retry is tested: it is tried again on the next socket', async () => {
  const { network, client, server, box } = await joined();
  const id = client.sendAppData('p-bob', { n: 1 });
  refuse(server, await box.take('app-data'));
  assert.equal((await box.take('app-data')).id, id);
  // Its ping goes unanswered: the socket ends first.
  server.drop(1006);

  const next = await network.nextConnection();
  next.welcome('node-b');
  const nextBox = mailbox(next);
  next.send(resumedReply(await nextBox.take('resume')));
  assert.equal((await nextBox.take('app-data')).id, id);
  await nextBox.pongAll();
  await eventually(() => client.delivery.state === 'ok', { message: 'delivered' });
  await client.close();
});

test('a seat lost and taken again drops what was held for the old peer id', async () => {
  const { network, client, server, box } = await joined({ initialMs: 60_000, maxMs: 60_000 });
  client.sendAppData('p-bob', { n: 1 });
  refuse(server, await box.take('app-data'));
  await eventually(() => client.delivery.held === 1, { message: 'held' });
  server.drop(1006);
  const next = await network.nextConnection();
  next.welcome('node-b');
  const nextBox = mailbox(next);
  const resume = await nextBox.take('resume');
  next.send({ type: 'error', code: 'resume-failed', message: 'expired', id: resume.id });
  const join = await nextBox.take('join');
  next.send({ ...resumedReply(join), type: 'joined', peer: 'p-new' });
  await eventually(() => client.peerId === 'p-new', { message: 'rejoined' });
  assert.deepEqual(client.delivery, { state: 'ok', held: 0 });
  client.sendAppData('p-bob', { n: 2 });
  assert.deepEqual((await nextBox.take('app-data')).data, { n: 2 });
  await client.close();
});

/** Sends app-data to Bob, then gets a refusal and a `pong` for one to Cleo: Bob's is known taken after. */
async function bobsKnownTaken(client, server, box) {
  const id = client.sendAppData('p-bob', { n: 1 });
  const toBob = await box.take('app-data');
  client.sendAppData('p-cleo', { n: 2 });
  refuse(server, await box.take('app-data'));
  assert.deepEqual((await box.take('app-data')).data, { n: 2 }, 'the retry');
  await box.pongAll();
  await eventually(() => client.delivery.state === 'ok', { message: 'delivery ok after the pong' });
  return { id, toBob };
}

test('a refusal after the pong, for a message the node kept through an outage, holds it again', async () => {
  const { client, server, box, eventsOf } = await joined();
  const { id, toBob } = await bobsKnownTaken(client, server, box);
  // The node kept it while Redis was away and then could not deliver it.
  refuse(server, toBob);
  const again = await box.take('app-data');
  assert.equal(again.id, id, 'sent again with its request id');
  assert.deepEqual(again.data, { n: 1 });
  await box.pongAll();
  await eventually(() => client.delivery.state === 'ok', { message: 'delivery ok again' });
  assert.equal(eventsOf('error').length, 0, 'a refusal for now is no error for the page');
  assert.equal(eventsOf('undelivered').length, 0);
});

test('a late refusal of a message older than the age bound tells the page it was not delivered', async () => {
  const { client, server, box, eventsOf } = await joined({ maxAgeMs: 200 });
  const { id, toBob } = await bobsKnownTaken(client, server, box);
  await new Promise((resolve) => setTimeout(resolve, 250));
  refuse(server, toBob);
  await eventually(() => eventsOf('undelivered').length === 1, { message: 'undelivered' });
  const [told] = eventsOf('undelivered');
  assert.equal(told.requestId, id);
  assert.equal(told.reason, 'expired');
  assert.equal(told.code, 'unavailable');
  assert.equal(box.pending, 0, 'not sent again');
});
