// Connection quality levels and safety codes, as pure functions.

import { test } from 'node:test';
import assert from 'node:assert/strict';

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
