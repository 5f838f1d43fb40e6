import { test } from 'node:test';
import assert from 'node:assert/strict';

import { eventually } from './fake-network.mjs';
import { joinedClient, joinedReply, makeClient, resumedReply } from './helpers.mjs';

test('after a drop the client reconnects and resumes as the same peer', async () => {
  const { network, client, server, states, eventsOf } = await joinedClient();
  server.drop(1006);
  await eventually(() => client.state === 'reconnecting', { message: 'reconnecting' });

  // Sent while the socket is down: kept for the resumed session.
  client.sendCandidate('p-bob', { candidate: 'candidate:9', sdpMid: '0' });

  const second = await network.nextConnection();
  second.welcome('node-b');
  const resume = await second.next('resume');
  assert.equal(resume.token, 'standup.p-self.token-1');
  assert.equal(resume.protocol, 1);
  assert.equal(second.received.size, 0, 'nothing but resume goes out before the seat is back');
  second.send(resumedReply(resume));

  const flushed = await second.next('candidate');
  assert.equal(flushed.candidate.candidate, 'candidate:9');
  assert.equal(client.state, 'connected');
  assert.equal(client.peerId, 'p-self');
  assert.equal(client.node, 'node-b');
  assert.deepEqual(states(), ['connecting', 'connected', 'reconnecting', 'connected']);
  assert.equal(eventsOf('resumed').length, 1);
  assert.equal(eventsOf('resumed')[0].cleanClose, false, 'the socket broke: the network may have changed');
  assert.equal(eventsOf('rejoined').length, 0);

  // The next drop resumes with the newest token.
  second.drop(1001);
  const third = await network.nextConnection();
  third.welcome('node-a');
  const again = await third.next('resume');
  assert.equal(again.token, 'standup.p-self.token-2');
  third.send(resumedReply(again));
  await eventually(() => eventsOf('resumed').length === 2, { message: 'resumed again' });
  assert.equal(eventsOf('resumed')[1].cleanClose, true, 'the node closed that socket with a close frame');
  await client.close();
});

test('when the seat is gone the client joins again and reports the new peer id', async () => {
  const { network, client, server, eventsOf } = await joinedClient();
  server.drop();
  await eventually(() => client.state === 'reconnecting', { message: 'reconnecting' });
  client.sendOffer('p-bob', 'stale offer for the old seat');

  const second = await network.nextConnection();
  second.welcome('node-b');
  const resume = await second.next('resume');
  second.send({ type: 'error', code: 'resume-failed', message: 'the seat expired', id: resume.id });
  const join = await second.next('join');
  assert.equal(join.room, 'standup');
  assert.equal(join.name, 'Ann');
  second.send(joinedReply(join, { peer: 'p-self-2', resumeToken: 'standup.p-self-2.t' }));

  await eventually(() => eventsOf('rejoined').length === 1, { message: 'rejoined' });
  const rejoined = eventsOf('rejoined')[0];
  assert.equal(rejoined.peer, 'p-self-2');
  assert.equal(rejoined.previousPeer, 'p-self');
  assert.equal(client.peerId, 'p-self-2');
  await eventually(() => client.state === 'connected', { message: 'connected' });
  // The stale offer was for a negotiation that no longer exists.
  client.sendAppData('p-bob', { audio: true, video: true });
  assert.equal((await second.next()).type, 'app-data');
  await client.close();
});

test('a failed rejoin ends the session and says why', async () => {
  const { network, client, server, eventsOf } = await joinedClient();
  server.drop();
  const second = await network.nextConnection();
  second.welcome();
  const resume = await second.next('resume');
  second.send({ type: 'error', code: 'resume-failed', message: 'expired', id: resume.id });
  const join = await second.next('join');
  second.send({ type: 'error', code: 'room-full', message: 'full', id: join.id });

  await eventually(() => eventsOf('session-lost').length === 1, { message: 'session-lost' });
  assert.equal(eventsOf('session-lost')[0].error.code, 'room-full');
  assert.equal(client.peerId, null);
  assert.equal(client.state, 'connected');
  await client.close();
});

test('a resume that goes unanswered counts the socket as dead and tries another', async () => {
  const { network, client, server } = await joinedClient({ requestTimeoutMs: 100 });
  server.drop();
  const silent = await network.nextConnection();
  silent.welcome();
  await silent.next('resume');
  assert.equal(await silent.closed, 4000, 'closed as reconnecting, so the seat is kept');

  const next = await network.nextConnection();
  next.welcome();
  const resume = await next.next('resume');
  next.send(resumedReply(resume));
  await eventually(() => client.state === 'connected', { message: 'connected' });
  await client.close();
});

test('a join interrupted by a drop goes out again on the next socket', async () => {
  const { network, client } = makeClient();
  client.connect();
  const first = await network.nextConnection();
  first.welcome();
  await client.connect();
  const joining = client.join({ room: 'standup', name: 'Ann' });
  await first.next('join');
  first.drop();

  const second = await network.nextConnection();
  second.welcome();
  const join = await second.next('join');
  second.send(joinedReply(join));
  assert.equal((await joining).peer, 'p-self');
  await client.close();
});

test('a join refused because the node drains is retried elsewhere', async () => {
  const { network, client } = makeClient();
  const joining = client.join({ room: 'standup', name: 'Ann' });
  const draining = await network.nextConnection();
  draining.welcome('node-a');
  const refused = await draining.next('join');
  draining.send({ type: 'error', code: 'draining', message: 'shutting down', id: refused.id });
  assert.equal(await draining.closed, 4000);

  const healthy = await network.nextConnection();
  healthy.welcome('node-b');
  const join = await healthy.next('join');
  healthy.send(joinedReply(join));
  assert.equal((await joining).peer, 'p-self');
  assert.equal(client.node, 'node-b');
  await client.close();
});

test('drain: resume on a new socket first, then close the old one with 4000', async () => {
  const { network, client, server, states, eventsOf } = await joinedClient();
  server.send({ type: 'reconnect', reason: 'draining' });

  const next = await network.nextConnection();
  assert.equal(server.closeCode, null, 'the old socket stays open during the handover');
  // The old node still relays while the new socket is being set up.
  server.send({ type: 'candidate', from: 'p-bob', candidate: { candidate: 'candidate:old', sdpMid: '0' } });
  await eventually(() => eventsOf('candidate').length === 1, { message: 'relay on old socket' });

  next.welcome('node-b');
  const resume = await next.next('resume');
  assert.equal(resume.token, 'standup.p-self.token-1');
  // Sent while the resume is in flight: held back, since the node may be moving the seat.
  client.sendAppData('p-bob', { audio: false, video: true });
  next.send(resumedReply(resume));

  assert.equal(await server.closed, 4000);
  assert.deepEqual((await next.next('app-data')).data, { audio: false, video: true });
  assert.equal(server.received.size, 0, 'nothing was sent on the old socket');
  assert.equal(client.node, 'node-b');
  assert.equal(eventsOf('reconnect').length, 1);
  assert.equal(eventsOf('resumed').length, 1);
  assert.equal(eventsOf('resumed')[0].cleanClose, true, 'a drain changes no network');
  assert.ok(!states().includes('reconnecting'), 'a drain is seamless for the person');

  // The loop follows the new socket: a later drop reconnects and resumes again.
  next.drop();
  const third = await network.nextConnection();
  third.welcome('node-c');
  assert.equal((await third.next('resume')).token, 'standup.p-self.token-2');
  await client.close();
});

test('drain: landing on the draining node again is retried until another node takes it', async () => {
  const { network, client, server } = await joinedClient();
  server.send({ type: 'reconnect', reason: 'draining' });

  const same = await network.nextConnection();
  same.welcome('node-a');
  const refused = await same.next('resume');
  same.send({ type: 'error', code: 'draining', message: 'shutting down', id: refused.id });
  await same.closed;

  const other = await network.nextConnection();
  other.welcome('node-b');
  const resume = await other.next('resume');
  other.send(resumedReply(resume));
  assert.equal(await server.closed, 4000);
  assert.equal(client.node, 'node-b');
  assert.equal(client.state, 'connected');
  await client.close();
});

test('drain: when the old node goes away mid-handover the handover still lands', async () => {
  const { network, client, server, eventsOf } = await joinedClient();
  server.send({ type: 'reconnect', reason: 'draining' });
  const next = await network.nextConnection();
  server.drop(1001);
  await eventually(() => client.state === 'reconnecting', { message: 'reconnecting' });

  next.welcome('node-b');
  const resume = await next.next('resume');
  next.send(resumedReply(resume));
  await eventually(() => client.state === 'connected', { message: 'connected' });
  assert.equal(client.node, 'node-b');
  assert.equal(eventsOf('resumed').length, 1);
  assert.equal(network.pendingConnections, 0, 'no second reconnect raced the handover');
  await client.close();
});

test('reconnectNow skips the backoff wait', async () => {
  const { network, client, server } = await joinedClient({
    backoff: { initialMs: 60_000, maxMs: 60_000, factor: 2, jitter: 0 },
  });
  server.drop();
  await eventually(() => client.state === 'reconnecting', { message: 'reconnecting' });
  client.reconnectNow();
  const next = await network.nextConnection(500);
  next.welcome();
  const resume = await next.next('resume');
  next.send(resumedReply(resume));
  await eventually(() => client.state === 'connected', { message: 'connected' });
  await client.close();
});

test('a resumed listener can take back a queued offer before the outbox goes out', async () => {
  const { network, client, server } = await joinedClient();
  server.drop(1006);
  await eventually(() => client.state === 'reconnecting', { message: 'reconnecting' });
  client.sendOffer('p-bob', 'offer made while down');
  client.sendCandidate('p-bob', { candidate: 'candidate:1', sdpMid: '0' });
  client.sendOffer('p-carol', 'offer to someone else');
  let discarded = null;
  client.on('resumed', () => {
    discarded = client.discardQueued('p-bob', 'offer');
    client.sendOffer('p-bob', 'offer made after the gap');
  });

  const next = await network.nextConnection();
  next.welcome('node-b');
  next.send(resumedReply(await next.next('resume')));
  assert.equal((await next.next('candidate')).candidate.candidate, 'candidate:1');
  assert.equal((await next.next('offer')).sdp, 'offer to someone else');
  assert.equal((await next.next('offer')).sdp, 'offer made after the gap', 'sent after what was queued before it');
  assert.equal(discarded, 1);
  assert.equal(next.received.size, 0);
  await client.close();
});

test('drain: a resumed listener can take back what the handover held, and sends after it', async () => {
  const { network, client, server } = await joinedClient();
  server.send({ type: 'reconnect', reason: 'draining' });
  const next = await network.nextConnection();
  next.welcome('node-b');
  const resume = await next.next('resume');
  client.sendOffer('p-bob', 'offer held during the handover');
  client.sendAppData('p-bob', { audio: true });
  client.on('resumed', () => {
    assert.equal(client.discardQueued('p-bob', 'offer'), 1);
    client.sendOffer('p-bob', 'offer made after the handover');
  });
  next.send(resumedReply(resume));
  assert.deepEqual((await next.next('app-data')).data, { audio: true });
  assert.equal((await next.next('offer')).sdp, 'offer made after the handover');
  assert.equal(server.received.size, 0, 'nothing was sent on the old socket');
  await client.close();
});
