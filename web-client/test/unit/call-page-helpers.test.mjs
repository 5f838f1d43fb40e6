// Connection quality levels, safety codes and what a tile shows of a call state, as pure functions.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { mediaOfCallState } from '../../public/js/call.js';
import { qualityOf } from '../../public/js/call-stats.js';
import { fingerprintOf, safetyCode } from '../../public/js/safety-code.js';

test('connection quality: loss and round trip decide, nothing to judge gives null', () => {
  assert.equal(qualityOf(null), null);
  assert.equal(qualityOf({ rttMs: null, lossPercent: null }), null);
  assert.equal(qualityOf({ rttMs: 20, lossPercent: 0 }), 'good');
  assert.equal(qualityOf({ rttMs: 20, lossPercent: null }), 'good');
  assert.equal(qualityOf({ rttMs: 350, lossPercent: 0 }), 'fair');
  assert.equal(qualityOf({ rttMs: 20, lossPercent: 3 }), 'fair');
  assert.equal(qualityOf({ rttMs: 700, lossPercent: 0 }), 'poor');
  assert.equal(qualityOf({ rttMs: 20, lossPercent: 12.5 }), 'poor');
});

const SDP_A = 'v=0\r\na=group:BUNDLE 0\r\na=fingerprint:sha-256 0A:1B:2C:3D\r\nm=audio 9\r\n';
const SDP_B = 'v=0\r\nm=audio 9\r\na=fingerprint:SHA-256 ff:ee:dd:cc\r\n';

test('safety codes: the same on both sides, different when a fingerprint differs', async () => {
  const a = fingerprintOf(SDP_A);
  const b = fingerprintOf(SDP_B);
  assert.equal(a, 'sha-256 0A:1B:2C:3D');
  assert.equal(b, 'sha-256 FF:EE:DD:CC');
  assert.equal(fingerprintOf('v=0\r\n'), null);
  const code = await safetyCode(a, b);
  assert.match(code, /^\d{4} \d{4} \d{4}$/);
  assert.equal(await safetyCode(b, a), code);
  assert.notEqual(await safetyCode(a, 'sha-256 FF:EE:DD:CD'), code);
});

test('the status line: never "Connected" while changes are refused, never "Connection lost" over a working call', async () => {
  const { signalingStatus } = await import('../../public/js/ui/messages.js');
  assert.deepEqual(signalingStatus({ state: 'connected' }), { label: 'Connected', tone: 'ok' });
  const refused = signalingStatus({ state: 'connected', refused: true, mediaFlowing: true });
  assert.equal(refused.tone, 'warn');
  assert.match(refused.label, /^Your call continues\. The server isn’t passing changes on right now\. Changes you make will reach the others when it’s back\.$/);
  assert.doesNotMatch(signalingStatus({ state: 'connected', refused: true }).label, /call continues/, 'no call to speak of');

  const away = signalingStatus({ state: 'reconnecting', retryInMs: 4000, mediaFlowing: true });
  assert.equal(away.tone, 'warn');
  assert.match(away.label, /^Your call continues\. The server can’t be reached right now\./);
  assert.match(signalingStatus({ state: 'reconnecting', retryInMs: 4000 }).label, /^Connection lost/, 'without media, the connection is lost');
});

test('a tile shows a call state: muted is no audio, camera off no video, sharing a screen; absent is false', () => {
  assert.deepEqual(mediaOfCallState({ muted: true }), { audio: false, video: true, screen: false });
  assert.deepEqual(mediaOfCallState({ cameraOff: true, sharing: true, hand: true }), { audio: true, video: false, screen: true });
  assert.deepEqual(mediaOfCallState({ id: 'p-bob', name: 'Bob' }), { audio: true, video: true, screen: false });
  assert.deepEqual(mediaOfCallState(undefined), { audio: true, video: true, screen: false });
  assert.deepEqual(mediaOfCallState({ muted: 'yes' }), { audio: true, video: true, screen: false });
});
