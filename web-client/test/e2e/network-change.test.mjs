// A call survives its network changing under one page, in real browsers on the
// emulated networks (netlab.mjs, network-moves.mjs). The mover is behind a NAT
// router; the other person is on the public network. Mid-call, three changes one
// after the other:
//   (a) the mover's link goes down for 5 s and comes back;
//   (b) the mover moves to a second NAT uplink (a new default route, a new public
//       address) while the old link stays up but forwards nothing;
//   (c) the mover moves back to the first uplink and the second link goes down.
// After each, the mover's page must notice by itself (its ping, network events,
// ICE going disconnected), open a new socket, resume its seat and restart ICE, and
// media must decode again on both sides before the node's ping timeout would have
// ended the mover's session: the other person never sees them leave (no
// `peer-left` on their page, no call-view removal, the same peer id in the
// roster; the node resumed the seat and timed no session out).
//
// Each change prints one line, `network change | browsers | change | ...`, with the
// time from the change to frames decoding again on each side (the end of the last
// stand-still of the frame count of 1 s or more; 0 when the browser moved media to
// another path without one), the longest stand-still, and when the mover gave up
// its socket, resumed its seat and had ICE connected again. Needs root; skipped
// otherwise.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';

import { Stack, openCaller, roomName, startNode, startTurn, waitFor, waitForMediaFromAll } from './harness.mjs';
import { Netlab, SERVER_ADDRESS, netlabUnavailable, removeLeftovers } from './netlab.mjs';
import { addUplink, coturnMissing, fetchTextIn, firstUplink, move } from './network-moves.mjs';

const unavailable = netlabUnavailable() ?? coturnMissing();
const NODE_PORT = 8080;
const ORIGIN = `http://${SERVER_ADDRESS}:${NODE_PORT}`;
/** The node's ping timeout (`heartbeat.timeout`): a silent socket is closed this long after it went silent. */
const SESSION_TIMEOUT_MS = 30_000;
const LINK_DOWN_MS = 5000;
/** How long the frame counter must stand still to count as media stopped. */
const STALL_MS = 1000;

const stack = new Stack();
let lab;
let node;
/** The mover's host and its two uplinks, and the other person's Chromium: shared by the cases. */
let moverHost;
let first;
let second;
let otherBrowser;

before(async () => {
  if (unavailable) return;
  removeLeftovers();
  lab = new Netlab(stack);
  const secret = randomBytes(24).toString('hex');
  await startTurn(stack, { secret, host: lab.serverHost() });
  moverHost = lab.connect(lab.host('mover'), { nat: 'endpoint-independent' }, stack);
  first = firstUplink(moverHost);
  second = addUplink(stack, lab, moverHost);
  const otherHost = lab.connect(lab.host('other'), 'public', stack);
  const nodeEnv = {
    VC_ICE__STUN_URLS: `stun:${SERVER_ADDRESS}:3478`,
    VC_HEARTBEAT__INTERVAL: '10s',
    VC_HEARTBEAT__TIMEOUT: `${SESSION_TIMEOUT_MS / 1000}s`,
  };
  [node, otherBrowser] = await Promise.all([
    startNode(stack, { id: 'netchange', host: lab.serverHost(), port: NODE_PORT, env: nodeEnv }),
    launch(otherHost, 'Chromium', stack),
  ]);
});

after(() => stack.cleanup());

/** Sums a counter of the node's /metrics over the series matching `labels`. */
function metric(name, labels = {}) {
  const text = fetchTextIn(lab.server, `${node.url}/metrics`) ?? '';
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    if (Object.entries(labels).every(([key, value]) => line.includes(`${key}="${value}"`))) {
      total += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
  }
  return total;
}

// Runs in a page once it is in the call: records what the person would notice of
// the other side leaving, every change of the decoded frame count (sampled every
// 50 ms, so that gaps can be measured afterwards), and a timeline of what the page
// did (signaling states, ICE and SDP states, offers, answers and candidates), which
// is printed when a change does not recover.
function instrumentPage() {
  const call = window.__vc.call;
  const log = { peerLeft: [], peerRemoved: [], events: [], resumed: 0, frames: [] };
  window.__netchange = log;
  const note = (event) => log.events.push({ at: Date.now(), event });
  const ufrag = (sdp) => /a=ice-ufrag:(\S+)/.exec(sdp ?? '')?.[1] ?? null;
  call.client.on('peer-left', ({ peer, reason }) => log.peerLeft.push({ peer, reason }));
  call.addEventListener('peer-removed', ({ detail }) => log.peerRemoved.push({ peer: detail.peerId, reason: detail.reason }));
  call.client.on('state', ({ state }) => note(state));
  call.client.on('resumed', () => {
    log.resumed += 1;
  });
  for (const { pc } of window.__vc.peerConnections()) {
    pc.addEventListener('iceconnectionstatechange', () => note(`ice ${pc.iceConnectionState}`));
    pc.addEventListener('signalingstatechange', () => note(`sdp ${pc.signalingState}`));
  }
  const sendCandidate = call.client.sendCandidate.bind(call.client);
  call.client.sendCandidate = (to, candidate) => {
    note(`sent candidate ${candidate?.candidate?.split(' ').slice(4, 8).join(' ') ?? 'end'}`);
    return sendCandidate(to, candidate);
  };
  for (const type of ['offer', 'answer']) {
    call.client.on(type, ({ sdp }) => note(`got ${type} ${ufrag(sdp)}`));
    const method = type === 'offer' ? 'sendOffer' : 'sendAnswer';
    const send = call.client[method].bind(call.client);
    call.client[method] = (to, sdp) => {
      note(`sent ${type} ${ufrag(sdp)}`);
      return send(to, sdp);
    };
  }
  let last = -1;
  setInterval(async () => {
    let frames = 0;
    for (const { pc } of window.__vc.peerConnections()) {
      const report = await pc.getStats().catch(() => null);
      report?.forEach((stat) => {
        if (stat.type === 'inbound-rtp' && stat.kind === 'video') frames = Math.max(frames, stat.framesDecoded ?? 0);
      });
    }
    if (frames !== last) {
      last = frames;
      log.frames.push([Date.now(), frames]);
      if (log.frames.length > 4000) log.frames.splice(0, 1000);
    }
  }, 50);
}

// Runs in a page: the ICE username fragments now in use, and the restarts so far.
function iceSnapshot() {
  const [entry] = window.__vc.peerConnections();
  const ufrag = (description) => /a=ice-ufrag:(\S+)/.exec(description?.sdp ?? '')?.[1] ?? null;
  return {
    local: ufrag(entry?.pc.localDescription),
    remote: ufrag(entry?.pc.remoteDescription),
    restarts: entry?.link.iceRestarts ?? 0,
    iceState: entry?.pc.iceConnectionState ?? null,
  };
}

/**
 * How media came back after `changedAt`, from a page's log of frame counts: the
 * longest time the count stood still (rises only: a new inbound stream after an
 * ICE restart counts from 0 again), and when frames were decoding again, the end
 * of the last stand-still of STALL_MS or more (`changedAt` when there was none: the
 * browser moved media to another path without a gap anyone would see).
 */
function mediaGap(frames, changedAt) {
  let lastRise = null;
  let longestMs = 0;
  let decodingAgainAt = changedAt;
  for (let i = 1; i < frames.length; i += 1) {
    const [at, count] = frames[i];
    if (count <= frames[i - 1][1]) continue;
    if (lastRise !== null && at > changedAt) {
      const gap = at - Math.max(lastRise, changedAt - STALL_MS);
      longestMs = Math.max(longestMs, gap);
      if (at - lastRise >= STALL_MS) decodingAgainAt = at;
    }
    lastRise = at;
  }
  return { longestMs, decodingAgainAt };
}

/** Resolves once `caller`'s frame count has risen by more than `frames` since `since`. */
async function framesRising(caller, since, frames = 10) {
  const countAt = (log, at) => log.filter(([t]) => t <= at).at(-1)?.[1] ?? 0;
  return waitFor(
    async () => {
      const log = (await caller.page.evaluate(() => window.__netchange)).frames;
      const [, latest] = log.at(-1) ?? [0, 0];
      return latest > countAt(log, since) + frames ? log : false;
    },
    { timeoutMs: SESSION_TIMEOUT_MS, intervalMs: 250, message: `${caller.name}'s frames to be decoding` },
  );
}

async function launch(host, engine, caseStack) {
  if (engine === 'Chromium') {
    return host.launchChromium(caseStack, { args: [`--unsafely-treat-insecure-origin-as-secure=${ORIGIN}`] });
  }
  // The page's plain-HTTP origin counts as secure, as localhost would: camera, crypto.subtle.
  return host.launchFirefox(caseStack, { prefs: { 'dom.securecontext.allowlist': SERVER_ADDRESS } });
}

const otherEngine = 'Chromium';

for (const moverEngine of ['Chromium', 'Firefox']) {
  test(
    `${moverEngine} moves networks mid-call with ${otherEngine}: it resumes, restarts ICE, and nobody sees it leave`,
    { skip: unavailable ?? false, timeout: 240_000 },
    async (t) => {
      const caseStack = new Stack();
      t.after(() => caseStack.cleanup());
      // Back where every case starts, whatever the last one left: on the first uplink.
      second.down();
      first.unblackhole();
      first.up();
      first.makeDefault();
      const moverBrowser = await launch(moverHost, moverEngine, caseStack);

      const room = roomName('netchange');
      const url = `${ORIGIN}/r/${room}?video=320x240`;
      const bob = await openCaller(otherBrowser, url, 'Bob Stone');
      const ann = await openCaller(moverBrowser, url, 'Ann Lee');
      caseStack.defer(() => Promise.all([ann.close(), bob.close()]).catch(() => {}));
      for (const caller of [ann, bob]) {
        caller.consoleLines = [];
        caller.page.on('console', (message) => {
          const text = typeof message.text === 'function' ? message.text() : String(message);
          caller.consoleLines.push(`${Date.now()} ${message.type?.() ?? ''} ${text}`.slice(0, 300));
          if (caller.consoleLines.length > 200) caller.consoleLines.shift();
        });
      }
      await bob.join();
      await ann.join();
      await Promise.all([waitForMediaFromAll(ann, 1, { timeoutMs: 30_000 }), waitForMediaFromAll(bob, 1, { timeoutMs: 30_000 })]);
      await Promise.all([ann.page.evaluate(instrumentPage), bob.page.evaluate(instrumentPage)]);
      const annPeer = (await ann.state()).peerId;
      assert.ok(annPeer, 'the mover has a peer id');

      const changes = [
        {
          name: `link down for ${LINK_DOWN_MS / 1000} s`,
          apply: async () => {
            first.down();
            await new Promise((resolve) => setTimeout(resolve, LINK_DOWN_MS));
            first.up();
            first.makeDefault();
          },
        },
        { name: 'to a second NAT uplink, old link up but silent', apply: async () => move(first, second, { oldLink: 'blackholed' }) },
        { name: 'back to the first NAT uplink, old link down', apply: async () => move(second, first, { oldLink: 'down' }) },
      ];

      for (const change of changes) {
        const start = {
          ann: await ann.page.evaluate(iceSnapshot),
          bob: await bob.page.evaluate(iceSnapshot),
          resumed: await ann.page.evaluate(() => window.__netchange.resumed),
          resumesOk: metric('vc_resumes_total', { outcome: 'ok' }),
          timedOut: metric('vc_sessions_closed_total', { reason: 'timed_out' }),
        };
        const changedAt = Date.now();
        await change.apply();
        let settledAt;
        try {
          // The mover noticed, resumed its seat on a new socket and restarted ICE.
          settledAt = await waitFor(
            async () => {
              const [annState, annLog, annIce, bobIce] = await Promise.all([
                ann.state(),
                ann.page.evaluate(() => window.__netchange),
                ann.page.evaluate(iceSnapshot),
                bob.page.evaluate(iceSnapshot),
              ]);
              const resumed = annLog.resumed > start.resumed && annState.signaling === 'connected';
              const restarted = annIce.local !== start.ann.local && bobIce.local !== start.bob.local;
              return resumed && restarted && ['connected', 'completed'].includes(annIce.iceState) && Date.now();
            },
            { timeoutMs: SESSION_TIMEOUT_MS + 10_000, intervalMs: 250, message: `${change.name}: the mover to resume and restart ICE` },
          );
          await Promise.all([framesRising(ann, settledAt), framesRising(bob, settledAt)]);
        } catch (err) {
          const dump = async (caller) => ({
            ice: await caller.page.evaluate(iceSnapshot),
            events: (await caller.page.evaluate(() => window.__netchange.events))
              .filter(({ at }) => at > changedAt - 15_000)
              .map(({ at, event }) => `${at - changedAt}: ${event}`),
            frames: (await caller.page.evaluate(() => window.__netchange.frames))
              .filter(([at], i, all) => at > changedAt - 2000 && (i === 0 || at - all[i - 1][0] > 300))
              .map(([at, n]) => `${at - changedAt}:${n}`)
              .slice(0, 60)
              .join(' '),
            console: caller.consoleLines.slice(-30),
          });
          console.log(`${change.name}: at the change`, JSON.stringify(start));
          console.log(`${change.name}: mover`, JSON.stringify(await dump(ann), null, 1));
          console.log(`${change.name}: other`, JSON.stringify(await dump(bob), null, 1));
          throw err;
        }
        const annLog = await ann.page.evaluate(() => window.__netchange);
        const bobLog = await bob.page.evaluate(() => window.__netchange);
        const annGap = mediaGap(annLog.frames, changedAt);
        const bobGap = mediaGap(bobLog.frames, changedAt);
        const afterAnn = await ann.page.evaluate(iceSnapshot);
        const afterBob = await bob.page.evaluate(iceSnapshot);
        const firstAfterChange = (event) => annLog.events.find((entry) => entry.at >= changedAt && entry.event === event)?.at;
        const noticedAt = firstAfterChange('reconnecting');
        const resumedAt = firstAfterChange('connected');
        const since = (at) => (at ? `${at - changedAt} ms` : 'never');
        console.log(
          `network change | ${moverEngine} (mover) with ${otherEngine} | ${change.name} | ` +
            `frames decoding again after: mover ${annGap.decodingAgainAt - changedAt} ms, other ${bobGap.decodingAgainAt - changedAt} ms | ` +
            `longest frame gap: mover ${annGap.longestMs} ms, other ${bobGap.longestMs} ms | ` +
            `mover's socket given up ${since(noticedAt)}, seat resumed ${since(resumedAt)}, ICE connected again ${since(settledAt)} | ` +
            `ICE restarts so far: mover ${afterAnn.restarts}, other ${afterBob.restarts}`,
        );

        // The mover resumed its seat on a new socket, under the same peer id; the node agrees.
        assert.equal((await ann.state()).peerId, annPeer, `${change.name}: the mover kept its peer id`);
        assert.ok(metric('vc_resumes_total', { outcome: 'ok' }) > start.resumesOk, `${change.name}: the node resumed a seat`);

        // Nobody saw the mover leave.
        assert.deepEqual(bobLog.peerLeft, [], `${change.name}: no peer-left on the other page`);
        assert.deepEqual(bobLog.peerRemoved, [], `${change.name}: the other page's call view removed no one`);
        const bobState = await bob.state();
        assert.deepEqual(
          bobState.peers.map((peer) => peer.id),
          [annPeer],
          `${change.name}: the mover is still in the other's roster`,
        );
        assert.equal(
          metric('vc_sessions_closed_total', { reason: 'timed_out' }),
          start.timedOut,
          `${change.name}: the node timed no session out`,
        );
        for (const [side, gap] of [
          ['mover', annGap],
          ['other', bobGap],
        ]) {
          assert.ok(
            gap.decodingAgainAt - changedAt < SESSION_TIMEOUT_MS,
            `${change.name}: the ${side}'s media back before the node's ping timeout`,
          );
        }
      }
      // Firefox reports the sockets it could not open while offline, and the ones the
      // page let go of ("interrupted while the page was loading"); nothing else may fail.
      const socketUrl = `${ORIGIN.replace(/^http/, 'ws')}/ws`;
      const unexpected = (errors) => errors.filter((message) => !message.includes(socketUrl));
      assert.deepEqual(unexpected(ann.errors), []);
      assert.deepEqual(unexpected(bob.errors), []);
    },
  );
}
