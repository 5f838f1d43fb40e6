import { test } from 'node:test';
import assert from 'node:assert/strict';

import { eventually } from './fake-network.mjs';
import { joinedClient, joinedReply, resumedReply } from './helpers.mjs';

const STREAM = '00ff00ff00ff00ff';

/** Joined as Ann on a numbered stream; returns the server side too. */
const numberedClient = () => joinedClient(undefined, { stream: STREAM });

const offer = (seq, sdp) => ({ seq, type: 'offer', from: 'p-bob', sdp });

test('frames are handed on once by seq, acknowledged on what the client sends, and named on resume', async () => {
  const { network, client, server, eventsOf } = await numberedClient();
  server.send(offer(1, 'one'));
  server.send(offer(2, 'two'));
  server.send(offer(2, 'two again'));
  server.send(offer(1, 'one again'));
  await eventually(() => eventsOf('offer').length === 2, { message: 'two offers' });
  // Acknowledged on the next message, whatever its type: nothing is sent for it alone.
  client.sendAnswer('p-bob', 'v=0');
  const answer = await server.next('answer');
  assert.equal(answer.ack, 2);

  server.drop(1006);
  const second = await network.nextConnection();
  second.welcome('node-b');
  const resume = await second.next('resume');
  assert.equal(resume.lastSeq, 2);
  assert.equal(resume.stream, STREAM);
  assert.equal(resume.ack, 2);
  second.send(resumedReply(resume, { stream: STREAM, replay: 'complete' }));
  // The replay, then a live copy of its last frame: the copy is dropped.
  second.send(offer(3, 'three'));
  second.send(offer(4, 'four'));
  second.send(offer(4, 'four, live'));
  second.send(offer(5, 'five'));
  await eventually(() => eventsOf('offer').length === 5, { message: 'five offers' });
  assert.deepEqual(
    eventsOf('offer').map((o) => o.sdp),
    ['one', 'two', 'three', 'four', 'five'],
  );
  assert.equal(eventsOf('resumed')[0].replay, 'complete');
  await client.close();
});

test('an incomplete replay is told to the page with the resumed seat; a join starts the count again', async () => {
  const { network, client, server, eventsOf } = await numberedClient();
  server.send(offer(7, 'seven'));
  await eventually(() => eventsOf('offer').length === 1, { message: 'an offer' });
  server.drop(1006);
  const second = await network.nextConnection();
  second.welcome('node-b');
  const resume = await second.next('resume');
  assert.equal(resume.lastSeq, 7);
  second.send(resumedReply(resume, { stream: STREAM, replay: 'incomplete' }));
  await eventually(() => eventsOf('resumed').length === 1, { message: 'resumed' });
  assert.equal(eventsOf('resumed')[0].replay, 'incomplete');
  // The stream goes on: an old number is still a duplicate.
  second.send(offer(6, 'six'));
  second.send(offer(8, 'eight'));
  await eventually(() => eventsOf('offer').length === 2, { message: 'eight' });
  assert.equal(eventsOf('offer')[1].sdp, 'eight');

  // The seat is lost and a new one taken: a new stream, numbered from 1.
  second.drop(1006);
  const third = await network.nextConnection();
  third.welcome('node-c');
  const again = await third.next('resume');
  third.send({ type: 'error', code: 'resume-failed', message: 'expired', id: again.id });
  const join = await third.next('join');
  third.send(joinedReply(join, { peer: 'p-self-2', stream: 'aaaaaaaaaaaaaaaa' }));
  await eventually(() => eventsOf('rejoined').length === 1, { message: 'rejoined' });
  third.send(offer(1, 'new stream'));
  await eventually(() => eventsOf('offer').length === 3, { message: 'on the new stream' });
  client.sendAnswer('p-bob', 'v=0');
  assert.equal((await third.next('answer')).ack, 1);
  await client.close();
});

test('a node that does not number frames gets neither acks nor lastSeq', async () => {
  const setup = await joinedClient();
  const { server } = setup;
  server.send({ type: 'offer', from: 'p-bob', sdp: 'plain' });
  await eventually(() => setup.eventsOf('offer').length === 1, { message: 'an offer' });
  setup.client.sendAnswer('p-bob', 'v=0');
  assert.equal((await server.next('answer')).ack, undefined);
  server.drop(1006);
  const second = await setup.network.nextConnection();
  second.welcome('node-b');
  const resume = await second.next('resume');
  assert.equal(resume.lastSeq, undefined);
  assert.equal(resume.stream, undefined);
  await setup.client.close();
});
