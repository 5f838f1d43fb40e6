// Messages for the whole room in the signaling client (chat, raised hands,
// reactions), and what the lobby says of a room's head count.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { REACTIONS } from '../../public/lib/signaling-client.js';
import { headCountText } from '../../public/js/ui/messages.js';
import { eventually } from './fake-network.mjs';
import { joinedClient, joinedReply } from './helpers.mjs';

test('chat, hands and reactions go out with request ids and come in as events', async () => {
  const { client, server, eventsOf } = await joinedClient();
  const chatId = client.sendChat('Hello\nall');
  const handId = client.setCallState({ hand: true });
  const reactionId = client.sendReaction('🎉');
  assert.deepEqual(await server.next('chat'), { type: 'chat', text: 'Hello\nall', id: chatId });
  assert.deepEqual(await server.next('call-state'), {
    type: 'call-state',
    hand: true,
    muted: false,
    cameraOff: false,
    sharing: false,
    id: handId,
  });
  assert.deepEqual(await server.next('reaction'), { type: 'reaction', emoji: '🎉', id: reactionId });
  assert.equal(new Set([chatId, handId, reactionId]).size, 3);

  const chat = { type: 'chat', messageId: '00ff00ff00ff00ff', from: 'p-bob', name: 'Bob', text: 'Hi', at: 1764000000000 };
  server.send(chat);
  server.send({ type: 'reaction', from: 'p-bob', emoji: '👍' });
  server.send({ type: 'peer-state', peer: 'p-bob', hand: true });
  await eventually(() => eventsOf('peer-state').length === 1, { message: 'peer-state' });
  assert.deepEqual(eventsOf('chat'), [chat]);
  assert.equal(eventsOf('reaction')[0].emoji, '👍');
  assert.equal(client.members[0].hand, true, 'the member list follows the hand');

  // A refusal names the request it answers.
  server.send({ type: 'error', code: 'chat-too-long', message: 'too long', id: chatId });
  await eventually(() => eventsOf('error').length === 1, { message: 'the error' });
  assert.equal(eventsOf('error')[0].requestId, chatId);
  assert.equal(eventsOf('error')[0].code, 'chat-too-long');
  await client.close();
});

test('the call state goes whole, a change merged into what was set; peer-state replaces a member’s', async () => {
  const { client, server, eventsOf } = await joinedClient();
  assert.deepEqual(client.callState, { hand: false, muted: false, cameraOff: false, sharing: false });
  const muted = client.setCallState({ muted: true });
  assert.deepEqual(await server.next('call-state'), {
    type: 'call-state',
    hand: false,
    muted: true,
    cameraOff: false,
    sharing: false,
    id: muted,
  });
  // Only booleans of the four fields count; the rest keeps what was set.
  const sharing = client.setCallState({ sharing: true, cameraOff: 'yes', raised: true });
  assert.deepEqual(await server.next('call-state'), {
    type: 'call-state',
    hand: false,
    muted: true,
    cameraOff: false,
    sharing: true,
    id: sharing,
  });
  assert.deepEqual(client.callState, { hand: false, muted: true, cameraOff: false, sharing: true });

  server.send({ type: 'peer-state', peer: 'p-bob', hand: true, muted: true, cameraOff: false, sharing: false });
  await eventually(() => eventsOf('peer-state').length === 1, { message: 'peer-state' });
  assert.deepEqual(client.members[0], { id: 'p-bob', name: 'Bob', hand: true, muted: true, cameraOff: false, sharing: false });
  // From a revision-2 sender's node: only the hand; what it leaves out is false.
  server.send({ type: 'peer-state', peer: 'p-bob', hand: false });
  await eventually(() => eventsOf('peer-state').length === 2, { message: 'second peer-state' });
  assert.deepEqual(client.members[0], { id: 'p-bob', name: 'Bob', hand: false, muted: false, cameraOff: false, sharing: false });
  await client.close();
});

test('a new join starts the call state over', async () => {
  const { client, server } = await joinedClient();
  client.setCallState({ hand: true, muted: true });
  await server.next('call-state');
  const leaving = client.leave();
  server.send({ type: 'left', id: (await server.next('leave')).id });
  await leaving;
  const joining = client.join({ room: 'standup', name: 'Ann' });
  const join = await server.next('join');
  server.send({ ...joinedReply(join), peer: 'p-self-2' });
  await joining;
  assert.deepEqual(client.callState, { hand: false, muted: false, cameraOff: false, sharing: false });
  await client.close();
});

test('the reactions are the six of the protocol', () => {
  assert.deepEqual(REACTIONS, ['👍', '👏', '😂', '😮', '❤️', '🎉']);
});

test('the lobby says who is there in words', () => {
  assert.equal(headCountText(0), 'No one else is here yet');
  assert.equal(headCountText(1), '1 person in the call');
  assert.equal(headCountText(5), '5 people in the call');
  assert.equal(headCountText(undefined), '');
  assert.equal(headCountText(-1), '');
});
