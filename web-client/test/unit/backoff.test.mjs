import { test } from 'node:test';
import assert from 'node:assert/strict';

import { backoffDelay, signalingUrlFor } from '../../public/lib/signaling-client.js';
import { eventually } from './fake-network.mjs';
import { makeClient } from './helpers.mjs';

const noJitter = { initialMs: 100, maxMs: 1000, factor: 2, jitter: 0 };

test('backoff doubles from the initial delay and stops at the cap', () => {
  const delays = [0, 1, 2, 3, 4, 5].map((attempt) => backoffDelay(attempt, noJitter));
  assert.deepEqual(delays, [100, 200, 400, 800, 1000, 1000]);
});

test('jitter spreads the delay by the given fraction both ways', () => {
  const backoff = { ...noJitter, jitter: 0.25 };
  assert.equal(backoffDelay(2, backoff, () => 0), 300);
  assert.equal(backoffDelay(2, backoff, () => 0.5), 400);
  assert.equal(backoffDelay(2, backoff, () => 0.999999), 500);
});

test('the signaling URL follows the page scheme and host', () => {
  assert.equal(signalingUrlFor({ protocol: 'https:', host: 'call.example.org' }), 'wss://call.example.org/ws');
  assert.equal(signalingUrlFor({ protocol: 'http:', host: '127.0.0.1:8080' }), 'ws://127.0.0.1:8080/ws');
});

test('an unreachable node is retried with growing delays until it answers', async () => {
  const { network, client, eventsOf } = makeClient({
    backoff: { initialMs: 4, maxMs: 16, factor: 2, jitter: 0 },
  });
  network.refuse = true;
  const connected = client.connect();
  const retries = () => eventsOf('state').filter((s) => s.retryInMs !== undefined);
  await eventually(() => retries().length >= 4, { message: 'four retries' });
  network.refuse = false;
  const server = await network.nextConnection();
  server.welcome('node-b');
  const welcome = await connected;

  assert.equal(welcome.node, 'node-b');
  assert.equal(client.state, 'connected');
  const firstFour = retries().slice(0, 4);
  assert.deepEqual(firstFour.map((s) => s.retryInMs), [4, 8, 16, 16]);
  assert.deepEqual(firstFour.map((s) => s.attempt), [1, 2, 3, 4]);
  // Never connected yet: the person is told it is connecting, not reconnecting.
  assert.ok(firstFour.every((s) => s.state === 'connecting'));
  await client.close();
});
