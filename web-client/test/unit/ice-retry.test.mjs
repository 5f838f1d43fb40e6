// What the page decides when ICE cannot connect a peer: how long it waits before
// trying again, and what it tells the person about why.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { ICE_RETRY, candidateType, hasRelayServer, iceFailureCause, iceRetryDelay } from '../../public/js/ice-retry.js';
import { connectionProblem } from '../../public/js/ui/messages.js';

const middle = () => 0.5;

test('failures in a row of a connection never made wait 8 s, 16 s, then 30 s each time', () => {
  const delays = [1, 2, 3, 4, 5, 10].map((failures) => iceRetryDelay(failures, { random: middle }));
  assert.deepEqual(delays, [8000, 16000, 30000, 30000, 30000, 30000]);
});

test('a connection that was up until its failure restarts at once, then waits as the others do', () => {
  const delays = [1, 2, 3, 4, 5].map((failures) => iceRetryDelay(failures, { wasConnected: true, random: middle }));
  assert.deepEqual(delays, [0, 8000, 16000, 30000, 30000]);
});

test('the waits are spread by ±20 %, so that both sides do not restart in step', () => {
  assert.equal(ICE_RETRY.jitter, 0.2);
  assert.equal(iceRetryDelay(1, { random: () => 0 }), 6400);
  assert.equal(iceRetryDelay(1, { random: () => 0.999999 }), 9600);
  assert.equal(iceRetryDelay(3, { random: () => 0 }), 24000);
  assert.equal(iceRetryDelay(3, { random: () => 0.999999 }), 36000);
  // Two sides drawing different numbers restart at different times.
  assert.notEqual(iceRetryDelay(2, { random: () => 0.1 }), iceRetryDelay(2, { random: () => 0.9 }));
});

test('a TURN server is recognised by its turn: or turns: URL, in a list or alone', () => {
  assert.equal(hasRelayServer([]), false);
  assert.equal(hasRelayServer(undefined), false);
  assert.equal(hasRelayServer([{ urls: ['stun:stun.example.org:3478'] }]), false);
  assert.equal(hasRelayServer([{ urls: 'turn:turn.example.org:3478?transport=udp' }]), true);
  assert.equal(hasRelayServer([{ urls: ['stun:a:3478'] }, { urls: ['TURNS:turn.example.org:5349?transport=tcp'] }]), true);
  assert.equal(hasRelayServer([{ urls: [42] }, null]), false);
});

test('candidate types come from the candidate, or from its SDP line when the browser gives no type', () => {
  assert.equal(candidateType(null), null);
  assert.equal(candidateType({ type: 'relay', candidate: 'candidate:1 1 udp 1 198.51.100.1 50000 typ relay' }), 'relay');
  assert.equal(candidateType({ candidate: 'candidate:2 1 udp 2122 192.0.2.10 5000 typ host generation 0' }), 'host');
  assert.equal(candidateType({ candidate: 'candidate:3 1 udp 1686 198.51.100.11 5000 typ srflx raddr 0.0.0.0 rport 0' }), 'srflx');
  assert.equal(candidateType({ candidate: '' }), null);
});

test('the cause of a failure: no relay configured, a relay that gave nothing, or no path at all', () => {
  const stunOnly = [{ urls: ['stun:198.51.100.1:3478'] }];
  const withTurn = [...stunOnly, { urls: ['turn:198.51.100.1:3478?transport=udp'], username: 'u', credential: 'c' }];
  assert.equal(iceFailureCause({ iceServers: stunOnly, localCandidateTypes: new Set(['host', 'srflx']) }), 'no-relay');
  assert.equal(iceFailureCause({ iceServers: [], localCandidateTypes: new Set(['host']) }), 'no-relay');
  assert.equal(iceFailureCause({ iceServers: withTurn, localCandidateTypes: new Set(['host', 'srflx']) }), 'relay-unreachable');
  assert.equal(iceFailureCause({ iceServers: withTurn, localCandidateTypes: ['host', 'relay'] }), 'unreachable');
});

test('each cause has words for the tile, naming the person; no cause, no message', () => {
  assert.equal(connectionProblem(null, 'Bob'), null);
  assert.equal(connectionProblem('something-else', 'Bob'), null);
  for (const cause of ['no-relay', 'relay-unreachable', 'unreachable']) {
    const message = connectionProblem(cause, 'Bob Stone');
    assert.equal(message.title, 'Can\u2019t connect to Bob Stone');
    assert.match(message.body, /Trying again now and then\.$/);
  }
  assert.match(connectionProblem('no-relay', 'Bob').body, /blocks a direct connection, and no relay server is configured/);
  assert.match(connectionProblem('relay-unreachable', 'Bob').body, /relay server could not be reached/);
});
