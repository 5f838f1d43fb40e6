import { SignalingClient } from '../../public/lib/signaling-client.js';
import { FakeNetwork } from './fake-network.mjs';

export const FAST_BACKOFF = { initialMs: 5, maxMs: 40, factor: 2, jitter: 0 };

/** A client on a fake network, recording every event it emits. */
export function makeClient(options = {}) {
  const network = new FakeNetwork();
  const client = new SignalingClient('ws://node.test/ws', {
    WebSocket: network.WebSocket,
    backoff: FAST_BACKOFF,
    requestTimeoutMs: 300,
    ...options,
  });
  const events = [];
  for (const type of [
    'state',
    'welcome',
    'joined',
    'resumed',
    'rejoined',
    'session-lost',
    'peer-joined',
    'peer-left',
    'offer',
    'answer',
    'candidate',
    'app-data',
    'chat',
    'reaction',
    'peer-state',
    'reconnect',
    'delivery',
    'undelivered',
    'error',
  ]) {
    client.on(type, (detail) => events.push({ type, detail }));
  }
  const states = () => events.filter((e) => e.type === 'state').map((e) => e.detail.state);
  const eventsOf = (type) => events.filter((e) => e.type === type).map((e) => e.detail);
  return { network, client, events, states, eventsOf };
}

export function joinedReply(join, overrides = {}) {
  return {
    type: 'joined',
    id: join.id,
    room: join.room,
    peer: 'p-self',
    name: join.name,
    members: [{ id: 'p-bob', name: 'Bob' }],
    iceServers: [{ urls: ['stun:stun.test:3478'] }],
    resumeToken: `${join.room}.p-self.token-1`,
    resumeWindowMs: 10000,
    ...overrides,
  };
}

/** The node's reply to `resume`: the same seat, a fresh token. */
export function resumedReply(resume, overrides = {}) {
  return {
    type: 'resumed',
    id: resume.id,
    room: 'standup',
    peer: 'p-self',
    name: 'Ann',
    members: [{ id: 'p-bob', name: 'Bob' }],
    iceServers: [{ urls: ['stun:stun.test:3478'] }],
    resumeToken: 'standup.p-self.token-2',
    resumeWindowMs: 10000,
    ...overrides,
  };
}

/**
 * Connects and joins room `standup` as Ann; returns the server side of the socket.
 * `reply` adds fields to the node's `joined` (a `stream`, say).
 */
export async function joinedClient(options, reply = {}) {
  const setup = makeClient(options);
  const connected = setup.client.connect();
  const server = await setup.network.nextConnection();
  server.welcome('node-a');
  await connected;
  const joining = setup.client.join({ room: 'standup', name: 'Ann' });
  const join = await server.next('join');
  server.send(joinedReply(join, reply));
  await joining;
  return { ...setup, server };
}
