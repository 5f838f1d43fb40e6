// The app's pure helpers: room links, call-quality numbers, grid sizing.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { callReport, snapshotFromStats, summarize } from '../../public/js/call-stats.js';
import { callOptionsFromQuery, inviteUrl, isValidRoom, randomRoomName, roomFromLocation } from '../../public/js/room-link.js';
import { bestGrid } from '../../public/js/ui/layout.js';

test('the room comes from /r/<room> or ?room=, and invalid names are flagged', () => {
  assert.deepEqual(roomFromLocation({ pathname: '/r/daily-standup', search: '' }), { room: 'daily-standup' });
  assert.deepEqual(roomFromLocation({ pathname: '/', search: '?room=team_sync' }), { room: 'team_sync' });
  assert.deepEqual(roomFromLocation({ pathname: '/', search: '' }), {});
  assert.deepEqual(roomFromLocation({ pathname: '/r/bad%20room', search: '' }), { invalid: 'bad room' });
  assert.deepEqual(roomFromLocation({ pathname: `/r/${'x'.repeat(65)}`, search: '' }), { invalid: 'x'.repeat(65) });
  assert.equal(inviteUrl('https://call.example.org', 'daily-standup'), 'https://call.example.org/r/daily-standup');
});

test('random room names are valid, readable and differ', () => {
  let counter = 0;
  const fakeRandom = (array) => array.map(() => (counter += 7919));
  const names = new Set(Array.from({ length: 50 }, () => randomRoomName(fakeRandom)));
  assert.equal(names.size, 50);
  for (const name of names) {
    assert.ok(isValidRoom(name), name);
    assert.match(name, /^[a-z]+-[a-z]+-\d{4}-[a-z0-9]{2}$/);
  }
  assert.ok(isValidRoom(randomRoomName()));
});

test('query options: relay only, camera size, token', () => {
  assert.deepEqual(callOptionsFromQuery('?relay=1&video=320x240&token=abc'), {
    token: 'abc',
    relayOnly: true,
    videoSize: { width: 320, height: 240 },
  });
  assert.deepEqual(callOptionsFromQuery(''), { token: null, relayOnly: false, videoSize: { width: 1280, height: 720 } });
  assert.equal(callOptionsFromQuery('?video=huge').videoSize.width, 1280);
});

function recordedStats({ at, bytesVideo, bytesAudio, packets, lost, frames, sent, rtt = 0.0123, type = 'relay' }) {
  return snapshotFromStats(
    [
      { id: 'T', type: 'transport', selectedCandidatePairId: 'P' },
      { id: 'P', type: 'candidate-pair', localCandidateId: 'L', remoteCandidateId: 'R', currentRoundTripTime: rtt },
      { id: 'Q', type: 'candidate-pair', localCandidateId: 'L2', remoteCandidateId: 'R', nominated: true, state: 'succeeded' },
      { id: 'L', type: 'local-candidate', candidateType: type, protocol: 'udp' },
      { id: 'L2', type: 'local-candidate', candidateType: 'host', protocol: 'udp' },
      { id: 'R', type: 'remote-candidate', candidateType: 'srflx' },
      {
        id: 'V',
        type: 'inbound-rtp',
        kind: 'video',
        bytesReceived: bytesVideo,
        packetsReceived: packets,
        packetsLost: lost,
        framesDecoded: frames,
        frameWidth: 640,
        frameHeight: 360,
        framesPerSecond: 29.7,
      },
      { id: 'A', type: 'inbound-rtp', kind: 'audio', bytesReceived: bytesAudio, packetsReceived: 100, packetsLost: 0 },
      { id: 'O1', type: 'outbound-rtp', kind: 'video', bytesSent: sent },
      { id: 'O2', type: 'outbound-rtp', kind: 'audio', bytesSent: 1000 },
    ],
    at,
  );
}

test('stats: the selected pair, rates over the interval, and loss', () => {
  const before = recordedStats({ at: 0, bytesVideo: 0, bytesAudio: 0, packets: 0, lost: 0, frames: 0, sent: 0 });
  const after = recordedStats({ at: 2000, bytesVideo: 200_000, bytesAudio: 50_000, packets: 190, lost: 10, frames: 60, sent: 250_000 });
  const summary = summarize(after, before);
  assert.equal(summary.candidateType, 'relay', 'the transport names the pair, not the first nominated one');
  assert.equal(summary.remoteCandidateType, 'srflx');
  assert.equal(summary.rttMs, 12.3);
  assert.equal(summary.receiveKbps, 1000);
  assert.equal(summary.sendKbps, 1000);
  // Over the interval 190 video packets arrived and 10 were lost; audio stood still.
  assert.equal(summary.lossPercent, 5);
  assert.equal(summary.frameWidth, 640);
  assert.equal(summary.framesDecoded, 60);
  const first = summarize(after);
  assert.equal(first.receiveKbps, null, 'no rate from a single sample');
  assert.equal(first.lossPercent, null);
});

test('call reports follow the protocol and stay within its bounds', () => {
  const summary = { candidateType: 'host', rttMs: 0.8 };
  const connected = { iceConnectedMs: 412, everConnected: true, iceFailed: false, negotiationStartedAt: 1 };
  assert.deepEqual(callReport(connected, summary, { final: true }), {
    final: true,
    iceConnectedMs: 412,
    outcome: 'connected',
    candidateType: 'host',
    rttMs: 0.8,
  });
  const neverConnected = { iceConnectedMs: null, everConnected: false, iceFailed: false, negotiationStartedAt: 1 };
  assert.deepEqual(callReport(neverConnected, null), { final: false });
  assert.deepEqual(callReport(neverConnected, null, { final: true }), { final: true, outcome: 'failed' });
  const failed = { ...connected, iceFailed: true, iceConnectedMs: 99_999_999 };
  const report = callReport(failed, { candidateType: 'unknown-kind', rttMs: null });
  assert.equal(report.outcome, 'failed');
  assert.equal(report.iceConnectedMs, 3_600_000);
  assert.equal('candidateType' in report, false);
  assert.equal('rttMs' in report, false);
});

test('the grid picks the column count that makes tiles largest', () => {
  assert.equal(bestGrid(1, 1200, 700).columns, 1);
  assert.equal(bestGrid(2, 1400, 600).columns, 2);
  assert.equal(bestGrid(2, 700, 1000).columns, 1);
  assert.equal(bestGrid(4, 1200, 700).columns, 2);
  assert.equal(bestGrid(6, 1600, 700).columns, 3);
  assert.equal(bestGrid(4, 360, 700, { aspect: 3 / 4 }).columns, 2);
  assert.equal(bestGrid(2, 360, 700, { aspect: 16 / 9 }).columns, 1);
  const { tileWidth } = bestGrid(4, 1200, 700, { gap: 10 });
  assert.ok(tileWidth * 2 + 10 <= 1200 && (tileWidth / (16 / 9)) * 2 + 10 <= 700);
});
