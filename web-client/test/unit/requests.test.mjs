import { test } from 'node:test';
import assert from 'node:assert/strict';

import { SignalingError } from '../../public/lib/signaling-client.js';
import { eventually } from './fake-network.mjs';
import { joinedClient, joinedReply, makeClient } from './helpers.mjs';

test('join sends the protocol version and resolves with the reply carrying its id', async () => {
  const { network, client, eventsOf } = makeClient();
  const connected = client.connect();
  const server = await network.nextConnection();
  server.welcome('node-a');
  await connected;
  assert.equal(client.node, 'node-a');

  const joining = client.join({ room: 'standup', name: 'Ann' });
  const join = await server.next('join');
  assert.equal(join.room, 'standup');
  assert.equal(join.name, 'Ann');
  assert.equal(join.protocol, 1);
  assert.equal('token' in join, false, 'no token field when none was given');
  assert.notEqual(join.id, undefined);

  // A reply to some other request id is not this join's answer.
  server.send({ type: 'error', code: 'unknown-peer', message: 'no such peer', id: join.id + 1000 });
  server.send(joinedReply(join));
  const joined = await joining;

  assert.equal(joined.peer, 'p-self');
  assert.equal(client.peerId, 'p-self');
  assert.equal(client.room, 'standup');
  assert.deepEqual(client.members, [{ id: 'p-bob', name: 'Bob' }]);
  assert.deepEqual(client.iceServers, [{ urls: ['stun:stun.test:3478'] }]);
  const errors = eventsOf('error');
  assert.equal(errors.length, 1);
  assert.equal(errors[0].code, 'unknown-peer');
  assert.equal(eventsOf('joined').length, 1);
  await client.close();
});

test('a refused join rejects with the node code and message', async () => {
  const { network, client } = makeClient();
  client.connect();
  const server = await network.nextConnection();
  server.welcome();
  const joining = client.join({ room: 'standup', name: 'Ann', token: 'jwt-token' });
  const join = await server.next('join');
  assert.equal(join.token, 'jwt-token');
  server.send({ type: 'error', code: 'room-full', message: 'room "standup" is full (8 of 8)', id: join.id });

  await assert.rejects(joining, (err) => {
    assert.ok(err instanceof SignalingError);
    assert.equal(err.code, 'room-full');
    assert.equal(err.requestId, join.id);
    assert.match(err.message, /full/);
    return true;
  });
  assert.equal(client.peerId, null);
  // The socket stays usable: another join goes out on it.
  const again = client.join({ room: 'other', name: 'Ann' });
  const second = await server.next('join');
  assert.notEqual(second.id, join.id);
  server.send(joinedReply(second, { room: 'other' }));
  assert.equal((await again).room, 'other');
  await client.close();
});

test('a second join while in a room is refused locally', async () => {
  const { client } = await joinedClient();
  await assert.rejects(client.join({ room: 'x', name: 'y' }), { code: 'already-joined' });
  await client.close();
});

test('relays carry the target and a request id, and incoming relays are emitted with their sender', async () => {
  const { client, server, eventsOf } = await joinedClient();
  const offerId = client.sendOffer('p-bob', 'v=0 offer');
  client.sendCandidate('p-bob', { candidate: 'candidate:1 1 udp 1 192.0.2.1 4000 typ host', sdpMid: '0' });
  const endId = client.sendCandidate('p-bob', null);
  client.sendAppData('p-bob', { audio: false, video: true });
  client.sendReport({ final: false, rttMs: 1.5, candidateType: 'host', outcome: 'connected' });

  // The id lets a refusal name the message it answers (docs/protocol.md).
  assert.deepEqual(await server.next('offer'), { type: 'offer', to: 'p-bob', sdp: 'v=0 offer', id: offerId });
  assert.equal((await server.next('candidate')).candidate.sdpMid, '0');
  assert.deepEqual(await server.next('candidate'), { type: 'candidate', to: 'p-bob', candidate: null, id: endId });
  assert.notEqual(offerId, endId);
  assert.deepEqual((await server.next('app-data')).data, { audio: false, video: true });
  assert.equal((await server.next('report')).report.rttMs, 1.5);

  server.send({ type: 'answer', from: 'p-bob', sdp: 'v=0 answer' });
  server.send({ type: 'app-data', from: 'p-bob', data: { audio: true, video: false } });
  await eventually(() => eventsOf('app-data').length === 1, { message: 'app-data event' });
  assert.deepEqual(eventsOf('answer'), [{ type: 'answer', from: 'p-bob', sdp: 'v=0 answer' }]);
  assert.equal(eventsOf('app-data')[0].from, 'p-bob');
  await client.close();
});

test('members follow peer-joined and peer-left', async () => {
  const { client, server, eventsOf } = await joinedClient();
  server.send({ type: 'peer-joined', peer: { id: 'p-cleo', name: 'Cleo' } });
  server.send({ type: 'peer-left', peer: 'p-bob', reason: 'left' });
  await eventually(() => eventsOf('peer-left').length === 1, { message: 'peer-left' });
  assert.deepEqual(client.members, [{ id: 'p-cleo', name: 'Cleo' }]);
  assert.equal(eventsOf('peer-left')[0].reason, 'left');
  await client.close();
});

test('unknown message types and fields from a newer node are ignored', async () => {
  const { client, server, events } = await joinedClient();
  const before = events.length;
  server.send({ type: 'future-thing', x: 1 });
  server.send({ type: 'peer-joined', peer: { id: 'p-dan', name: 'Dan', user: 'dan@x' }, extra: true });
  await eventually(() => events.length > before, { message: 'an event' });
  assert.deepEqual(events.slice(before).map((e) => e.type), ['peer-joined']);
  await client.close();
});

test('sending outside a room is an error, not a silent drop', async () => {
  const { network, client } = makeClient();
  client.connect();
  (await network.nextConnection()).welcome();
  await client.connect();
  assert.throws(() => client.sendOffer('p-bob', 'v=0'), { code: 'not-joined' });
  await client.close();
});

test('close leaves the room first, then closes the socket with 1000', async () => {
  const { client, server, states } = await joinedClient();
  const closing = client.close();
  const leave = await server.next('leave');
  server.send({ type: 'left', id: leave.id });
  await closing;
  assert.equal(await server.closed, 1000);
  assert.equal(client.state, 'closed');
  assert.equal(states().at(-1), 'closed');
  assert.equal(client.peerId, null);
  await assert.rejects(client.connect(), { code: 'closed' });
});

test('leave keeps the socket for another join', async () => {
  const { client, server } = await joinedClient();
  const leaving = client.leave();
  const leave = await server.next('leave');
  server.send({ type: 'left', id: leave.id });
  await leaving;
  assert.equal(client.peerId, null);
  assert.equal(server.closeCode, null);
  assert.equal(client.state, 'connected');
  await client.close();
  assert.equal(await server.closed, 1000);
});
