// Calls over a bad link: the path of one page (its NAT router's LAN side, both
// ways) gets 150 ms of delay, ±30 ms of jitter and 2 % loss from the link shaper
// (link-shaper.mjs; the kernel here has no netem). The page must still load, join
// and call, in Chromium and in Firefox ESR, with the other person on the public
// network. The tests first check the shaper itself with ping, and then that the
// round trip the browser measures in getStats() matches the shaping, so that they
// cannot pass with a shaper that does nothing.
//
// Prints the call set-up time (the shaped page's click on Join to the first
// decoded frame on each side) unshaped and shaped, one line per browser:
// `bad link | ...`. Needs root; skipped otherwise.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';

import { Stack, openCaller, roomName, startNode, startTurn, waitFor } from './harness.mjs';
import { pingRtts, shapeLink, shaperUnavailable } from './link-shaper.mjs';
import { Netlab, SERVER_ADDRESS, netlabUnavailable, removeLeftovers } from './netlab.mjs';
import { coturnMissing } from './network-moves.mjs';

const unavailable = netlabUnavailable() ?? shaperUnavailable() ?? coturnMissing();
const NODE_PORT = 8080;
const ORIGIN = `http://${SERVER_ADDRESS}:${NODE_PORT}`;
const LINK = { delayMs: 150, jitterMs: 30, loss: 0.02 };
/** The least round trip the shaped path can have: both ways at the shortest delay. */
const MIN_SHAPED_RTT_MS = 2 * (LINK.delayMs - LINK.jitterMs);

const stack = new Stack();
let lab;
let shapedHost;
let otherHost;
let otherBrowser;
/** What the shapers did, over every test of the file. */
const shaped = { seen: 0, dropped: 0 };

before(async () => {
  if (unavailable) return;
  removeLeftovers();
  lab = new Netlab(stack);
  shapedHost = lab.connect(lab.host('shaped'), { nat: 'endpoint-independent' }, stack);
  otherHost = lab.connect(lab.host('other'), 'public', stack);
  const secret = randomBytes(24).toString('hex');
  await startTurn(stack, { secret, host: lab.serverHost() });
  [, otherBrowser] = await Promise.all([
    startNode(stack, { id: 'badlink', host: lab.serverHost(), port: NODE_PORT, env: { VC_ICE__STUN_URLS: `stun:${SERVER_ADDRESS}:3478` } }),
    otherHost.launchChromium(stack, { args: [`--unsafely-treat-insecure-origin-as-secure=${ORIGIN}`] }),
  ]);
});

after(() => stack.cleanup());

/** Shapes the shaped host's path until the returned function is called, which adds what it did to `shaped`. */
async function shapePath(caseStack) {
  const shaper = await shapeLink(caseStack, { ns: shapedHost.router.ns, dev: 'lan', ...LINK });
  return async () => {
    const summary = await shaper.stop();
    assert.ok(summary, 'the shaper reported what it did');
    shaped.seen += summary.seen;
    shaped.dropped += summary.dropped;
    return summary;
  };
}

const mean = (values) => values.reduce((sum, value) => sum + value, 0) / values.length;

test('the shaper delays both ways and drops packets', { skip: unavailable ?? false, timeout: 60_000 }, async (t) => {
  const caseStack = new Stack();
  t.after(() => caseStack.cleanup());
  const plain = pingRtts(shapedHost.ns, SERVER_ADDRESS, { count: 10, intervalS: 0.05 });
  const stop = await shapePath(caseStack);
  const rtts = pingRtts(shapedHost.ns, SERVER_ADDRESS, { count: 40, intervalS: 0.05 });
  const summary = await stop();
  console.log(
    `bad link | ping to the node: unshaped mean ${mean(plain).toFixed(1)} ms | shaped ${rtts.length}/40 replies, ` +
      `min ${Math.min(...rtts)} ms, mean ${mean(rtts).toFixed(1)} ms, max ${Math.max(...rtts)} ms | ` +
      `shaper: ${summary.seen} packets, ${summary.dropped} dropped, mean hold ${summary.meanDelayMs} ms`,
  );
  assert.ok(rtts.length >= 24, `most pings come back (${rtts.length}/40)`);
  assert.ok(Math.min(...rtts) >= MIN_SHAPED_RTT_MS, `no round trip under ${MIN_SHAPED_RTT_MS} ms: ${rtts}`);
  // Uniform jitter both ways averages out: the mean of 40 is within a few ms of twice the delay.
  assert.ok(mean(rtts) >= 2 * LINK.delayMs - 15, `mean round trip ${mean(rtts)} ms is about twice ${LINK.delayMs} ms`);
  assert.ok(Math.abs(summary.meanDelayMs - LINK.delayMs) < 10, `the shaper held packets ${summary.meanDelayMs} ms on average`);
});

// Runs in the page: the round trip to the peer that the browser measured on the
// selected candidate pair with ICE's STUN checks, in seconds: the mean over every
// response (totalRoundTripTime / responsesReceived), else the latest one. RTCP's
// round trip is the fallback: it also counts how long the far end took to report,
// which on a busy machine is no small part of it.
async function roundTrip() {
  const [entry] = window.__vc.peerConnections();
  const report = await entry.pc.getStats();
  let pairId = null;
  const rtcp = [];
  report.forEach((stat) => {
    if (stat.type === 'transport' && stat.selectedCandidatePairId) pairId = stat.selectedCandidatePairId;
  });
  report.forEach((stat) => {
    if (!pairId && stat.type === 'candidate-pair' && stat.selected) pairId = stat.id;
    if (stat.type === 'remote-inbound-rtp' && stat.roundTripTime > 0) rtcp.push(stat.roundTripTime);
  });
  const pair = pairId ? report.get(pairId) : null;
  if (pair?.responsesReceived > 0 && pair.totalRoundTripTime > 0) {
    return { seconds: pair.totalRoundTripTime / pair.responsesReceived, source: `STUN mean of ${pair.responsesReceived}` };
  }
  if (pair?.currentRoundTripTime > 0) return { seconds: pair.currentRoundTripTime, source: 'STUN latest' };
  if (rtcp.length) return { seconds: Math.min(...rtcp), source: 'RTCP' };
  return null;
}

/** The round trip `caller`'s browser reports toward its peer, once it reports one. */
async function measuredRtt(caller) {
  const { seconds, source } = await waitFor(() => caller.page.evaluate(roundTrip), {
    timeoutMs: 20_000,
    intervalMs: 500,
    message: `${caller.name}'s browser to measure a round trip`,
  });
  return { ms: Math.round(1000 * seconds), source };
}

/**
 * Waits until `caller` decodes video and receives audio from its peer, and then
 * that both keep coming; returns when the first frame was seen. Slower than
 * harness.waitForMediaFromAll allows: a browser sending over a lossy link with a
 * long round trip starts with few frames.
 */
async function mediaFlowing(caller) {
  const first = await waitFor(
    async () => {
      const [stats] = await caller.mediaStats();
      return stats?.framesDecoded > 0 && stats.audioPacketsReceived > 0 ? stats : false;
    },
    { timeoutMs: 45_000, intervalMs: 50, message: `${caller.name} to decode video and receive audio` },
  );
  const firstMediaAt = Date.now();
  await waitFor(
    async () => {
      const [now] = await caller.mediaStats();
      return now.framesDecoded > first.framesDecoded + 5 && now.audioPacketsReceived > first.audioPacketsReceived + 5;
    },
    { timeoutMs: 30_000, intervalMs: 250, message: `${caller.name}'s media to keep coming` },
  );
  return { stats: first, firstMediaAt };
}

/**
 * One call: Bob on the public network joins first, then Ann on the shaped host.
 * Returns the times from Ann's click on Join to the first decoded frame on each
 * side, and the round trip Ann's browser measured.
 */
async function call(annBrowser, caseStack) {
  const url = `${ORIGIN}/r/${roomName('badlink')}?video=320x240`;
  const bob = await openCaller(otherBrowser, url, 'Bob Stone');
  caseStack.defer(() => bob.close().catch(() => {}));
  const ann = await openCaller(annBrowser, url, 'Ann Lee');
  caseStack.defer(() => ann.close().catch(() => {}));
  await bob.join();
  const clickedAt = await ann.join();
  const [annMedia, bobMedia] = await Promise.all([mediaFlowing(ann), mediaFlowing(bob)]);
  assert.equal(annMedia.stats.name, 'Bob Stone');
  assert.equal(bobMedia.stats.name, 'Ann Lee');
  const rtt = await measuredRtt(ann);
  for (const caller of [ann, bob]) assert.deepEqual(caller.errors, [], `${caller.name}'s page has no errors`);
  await Promise.all([ann.close(), bob.close()]);
  return { annMs: annMedia.firstMediaAt - clickedAt, bobMs: bobMedia.firstMediaAt - clickedAt, rtt };
}

for (const engine of ['Chromium', 'Firefox']) {
  test(`${engine} joins and calls over the bad link`, { skip: unavailable ?? false, timeout: 150_000 }, async (t) => {
    const caseStack = new Stack();
    t.after(() => caseStack.cleanup());
    const annBrowser =
      engine === 'Chromium'
        ? await shapedHost.launchChromium(caseStack, { args: [`--unsafely-treat-insecure-origin-as-secure=${ORIGIN}`] })
        : await shapedHost.launchFirefox(caseStack, { prefs: { 'dom.securecontext.allowlist': SERVER_ADDRESS } });

    const plain = await call(annBrowser, caseStack);
    const stop = await shapePath(caseStack);
    const bad = await call(annBrowser, caseStack);
    await stop();
    console.log(
      `bad link | ${engine} behind ${LINK.delayMs} ms ±${LINK.jitterMs} ms, ${LINK.loss * 100} % loss, with Chromium | ` +
        `Join to first decoded frame: unshaped ${plain.annMs} ms (other side ${plain.bobMs} ms), ` +
        `shaped ${bad.annMs} ms (other side ${bad.bobMs} ms) | ` +
        `round trip in getStats: unshaped ${plain.rtt.ms} ms (${plain.rtt.source}), shaped ${bad.rtt.ms} ms (${bad.rtt.source})`,
    );
    assert.ok(bad.rtt.ms >= MIN_SHAPED_RTT_MS, `the browser measured ${bad.rtt.ms} ms (${bad.rtt.source}) over the shaped path`);
  });
}

test('the shapers dropped about the fraction they were told to', { skip: unavailable ?? false }, (t) => {
  if (shaped.seen === 0) {
    t.skip('no shaped run in this selection of tests');
    return;
  }
  const fraction = shaped.dropped / shaped.seen;
  console.log(`bad link | over all shaped runs: ${shaped.seen} packets, ${shaped.dropped} dropped (${(100 * fraction).toFixed(2)} %)`);
  assert.ok(shaped.seen > 1000, `enough packets crossed the shaped link (${shaped.seen})`);
  // Over a thousand packets or more, 2 % loss lands between 0.5 % and 4 % but for one run in a few thousand.
  assert.ok(fraction > LINK.loss / 4 && fraction < LINK.loss * 2, `dropped ${fraction} of the packets`);
});
