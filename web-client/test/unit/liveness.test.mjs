import { test } from 'node:test';
import assert from 'node:assert/strict';

import { DEFAULT_LIVENESS } from '../../public/lib/signaling-client.js';
import { eventually } from './fake-network.mjs';
import { joinedClient, resumedReply } from './helpers.mjs';

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

test('the defaults check every 5 s and wait 3 s', () => {
  assert.deepEqual({ ...DEFAULT_LIVENESS }, { intervalMs: 5000, timeoutMs: 3000 });
});

test('a socket that answers its pings is kept', async () => {
  const { network, client, server, eventsOf } = await joinedClient({ liveness: { intervalMs: 20, timeoutMs: 40 } });
  server.answerPings();
  await eventually(() => server.pings >= 8, { message: 'eight pings' });
  assert.equal(client.state, 'connected');
  assert.equal(network.attempts, 1, 'no second socket');
  assert.equal(server.closeCode, null);
  assert.equal(eventsOf('error').length, 0, 'pongs are not reported');
  // Nothing but pings went out.
  assert.equal(server.received.size, 0);
  await client.close();
});

test('a ping carries a fresh request id every time', async () => {
  const { client, server } = await joinedClient({ liveness: { intervalMs: 0, timeoutMs: 1000 } });
  const ids = [];
  for (let i = 0; i < 3; i += 1) {
    client.checkNow();
    const ping = await server.next('ping');
    assert.deepEqual(Object.keys(ping).sort(), ['id', 'type']);
    ids.push(ping.id);
    server.send({ type: 'pong', id: ping.id });
    await sleep(5);
  }
  assert.equal(new Set(ids).size, 3, `ids ${ids}`);
  await client.close();
});

test('a silent socket is dropped and the seat resumed on a new one, without waiting for its close event', async () => {
  const { network, client, server, states, eventsOf } = await joinedClient({
    liveness: { intervalMs: 30, timeoutMs: 50 },
  });
  server.answerPings();
  await eventually(() => server.pings >= 2, { message: 'pings answered' });
  const lostAt = Date.now();
  server.blackhole();
  await eventually(() => client.state === 'reconnecting', { message: 'reconnecting' });
  const noticedMs = Date.now() - lostAt;
  assert.ok(noticedMs < 30 + 50 + 150, `noticed after ${noticedMs} ms`);

  const next = await network.nextConnection();
  next.welcome('node-b');
  const resume = await next.next('resume');
  assert.equal(resume.token, 'standup.p-self.token-1');
  next.send(resumedReply(resume, { iceServers: [] }));
  await eventually(() => client.state === 'connected', { message: 'connected again' });
  assert.equal(client.peerId, 'p-self');
  assert.equal(eventsOf('resumed').length, 1);
  assert.equal(eventsOf('resumed')[0].cleanClose, false, 'a silent socket says the network may have changed');
  assert.equal(eventsOf('rejoined').length, 0);

  // The old network comes back: the close the client started completes with
  // 4000 (the node keeps the seat, which the resume has already moved), and
  // what the old node still had queued is not taken for news.
  server.send({ type: 'peer-left', peer: 'p-bob', reason: 'timed-out' });
  server.heal();
  assert.equal(await server.closed, 4000);
  server.send({ type: 'peer-left', peer: 'p-bob', reason: 'timed-out' });
  await sleep(20);
  assert.equal(eventsOf('peer-left').length, 0);
  assert.deepEqual(client.members, [{ id: 'p-bob', name: 'Bob' }]);
  assert.equal(client.state, 'connected');
  assert.deepEqual(states(), ['connecting', 'connected', 'reconnecting', 'connected']);
  assert.equal(network.pendingConnections, 0, 'the late close started no other reconnect');
  await client.close();
});

test('any frame proves the socket alive: an older node refusing ping as unknown-type', async () => {
  const { network, client, server, eventsOf } = await joinedClient({ liveness: { intervalMs: 0, timeoutMs: 60 } });
  client.checkNow();
  const ping = await server.next('ping');
  server.send({ type: 'error', code: 'unknown-type', message: 'unknown message type "ping"', id: ping.id });
  await sleep(120);
  assert.equal(client.state, 'connected');
  assert.equal(network.attempts, 1);
  assert.equal(eventsOf('error').length, 0, 'the refusal of a ping is no news');

  // A relay that arrives while a check waits is a sign of life too.
  client.checkNow();
  await server.next('ping');
  server.send({ type: 'app-data', from: 'p-bob', data: { audio: true } });
  await sleep(120);
  assert.equal(client.state, 'connected');
  assert.equal(eventsOf('app-data').length, 1);
  await client.close();
});

test('checkNow pings at once, once however often it is called, and drops the socket after the timeout', async () => {
  const { network, client, server } = await joinedClient({ liveness: { intervalMs: 0, timeoutMs: 80 } });
  await sleep(50);
  assert.equal(server.received.size, 0, 'interval 0: no periodic ping');
  const askedAt = Date.now();
  client.checkNow();
  client.checkNow();
  client.checkNow();
  await server.next('ping');
  await eventually(() => client.state === 'reconnecting', { message: 'reconnecting' });
  const waitedMs = Date.now() - askedAt;
  assert.ok(waitedMs >= 75, `dropped after ${waitedMs} ms, before the timeout`);
  assert.equal(server.received.size, 0, 'one ping for three calls');
  assert.equal(await server.closed, 4000, 'closed as reconnecting, so the seat is kept');
  const next = await network.nextConnection();
  next.welcome();
  next.send(resumedReply(await next.next('resume'), { iceServers: [] }));
  await eventually(() => client.state === 'connected', { message: 'connected' });
  await client.close();
});

test('checkNow between sockets ends the backoff wait', async () => {
  const { network, client, server } = await joinedClient({
    backoff: { initialMs: 60_000, maxMs: 60_000, factor: 2, jitter: 0 },
  });
  server.drop();
  await eventually(() => client.state === 'reconnecting', { message: 'reconnecting' });
  client.checkNow();
  const next = await network.nextConnection(500);
  next.welcome();
  next.send(resumedReply(await next.next('resume'), { iceServers: [] }));
  await eventually(() => client.state === 'connected', { message: 'connected' });
  await client.close();
});

test('a request unanswered on a dead socket moves on without its close event', async () => {
  const { network, client, server } = await joinedClient({ requestTimeoutMs: 100, liveness: { intervalMs: 0 } });
  server.drop();
  const dead = await network.nextConnection();
  dead.welcome();
  await dead.next('resume');
  dead.blackhole();
  // The close never completes on the dead socket; the client does not wait for it.
  const next = await network.nextConnection(1000);
  next.welcome();
  next.send(resumedReply(await next.next('resume'), { iceServers: [] }));
  await eventually(() => client.state === 'connected', { message: 'connected' });
  assert.equal(dead.closeCode, null, 'its close is still under way');
  await client.close();
});

test('watchNetwork checks on online, offline and a connection change, until stopped', async () => {
  const { client, server } = await joinedClient({ liveness: { intervalMs: 0, timeoutMs: 1000 } });
  const windowEvents = new EventTarget();
  const connection = new EventTarget();
  const stop = client.watchNetwork(windowEvents, connection);
  for (const [target, type] of [
    [windowEvents, 'offline'],
    [windowEvents, 'online'],
    [connection, 'change'],
  ]) {
    target.dispatchEvent(new Event(type));
    const ping = await server.next('ping');
    server.send({ type: 'pong', id: ping.id });
    await sleep(5);
  }
  stop();
  windowEvents.dispatchEvent(new Event('online'));
  connection.dispatchEvent(new Event('change'));
  await sleep(30);
  assert.equal(server.received.size, 0, 'no check once stopped');
  // A browser without navigator.connection: the window's events alone.
  const stopWindowOnly = client.watchNetwork(windowEvents, undefined);
  windowEvents.dispatchEvent(new Event('online'));
  await server.next('ping');
  stopWindowOnly();
  await client.close();
});

test('no pings once closed', async () => {
  const { client, server } = await joinedClient({ liveness: { intervalMs: 10, timeoutMs: 1000 } });
  server.answerPings();
  await eventually(() => server.pings >= 1, { message: 'a ping' });
  await client.close();
  const after = server.pings;
  await sleep(50);
  assert.equal(server.pings, after);
  client.checkNow();
  assert.equal(server.pings, after);
});
