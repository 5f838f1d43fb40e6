// Two people on one node: the call itself, the controls, and a node restart.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  Stack,
  accessibilityViolations,
  assertMediaKeepsFlowing,
  blocking,
  launchBrowser,
  metricValue,
  openCaller,
  roomName,
  startNode,
  waitFor,
  waitForMediaFromAll,
} from './harness.mjs';

const stack = new Stack();
let node;
let browser;

before(async () => {
  [node, browser] = await Promise.all([startNode(stack, { id: 'solo' }), launchBrowser(stack)]);
});

after(() => stack.cleanup());

async function pairInCall(t, baseUrl, query = '') {
  const room = roomName('pair');
  const ann = await openCaller(browser, `${baseUrl}/r/${room}${query}`, 'Ann Lee');
  const bob = await openCaller(browser, `${baseUrl}/r/${room}${query}`, 'Bob Stone');
  t.after(() => Promise.all([ann.close(), bob.close()]));
  await ann.join();
  await bob.join();
  const [annMedia, bobMedia] = await Promise.all([waitForMediaFromAll(ann, 1), waitForMediaFromAll(bob, 1)]);
  return { room, ann, bob, annMedia, bobMedia };
}

test('1:1 call on one node: both sides decode video and receive audio', async (t) => {
  const outcomesBefore = await metricValue(node.url, 'vc_client_ice_outcomes_total', { outcome: 'connected', candidate_type: 'host' });
  const { ann, bob, annMedia, bobMedia } = await pairInCall(t, node.url);

  t.diagnostic(
    `join to first decoded frame: Bob ${bobMedia.firstMediaAt - bob.joinedAt} ms, ` +
      `Ann ${annMedia.firstMediaAt - bob.joinedAt} ms (from Bob's join)`,
  );
  assert.equal(annMedia.stats[0].name, 'Bob Stone');
  assert.equal(bobMedia.stats[0].name, 'Ann Lee');
  assert.equal(annMedia.stats[0].localCandidateType, 'host');

  // The tile plays the video and carries the name.
  const tile = ann.page.locator('.tile:not(.tile--local)');
  await waitFor(() => tile.locator('video').evaluate((video) => video.videoWidth > 0), { message: 'remote video to play' });
  assert.match(await tile.locator('.tile-name').innerText(), /Bob Stone/);
  assert.equal(await ann.page.locator('#signaling-status').getAttribute('data-state'), 'connected');

  // The stats panel shows what getStats() says.
  await ann.page.click('#toggle-stats');
  await waitFor(async () => (await tile.locator('.tile-stats').innerText()).includes('direct (host), UDP'), {
    message: 'the stats panel to show the route',
  });
  assert.match(await tile.locator('.tile-stats').innerText(), /Resolution\s+\d+×\d+/);

  // Bob hangs up: Ann's grid follows, and both sent a final report to the node.
  await bob.page.click('#leave-call');
  await bob.page.waitForSelector('text=You left the call');
  await waitFor(async () => (await ann.page.locator('.tile').count()) === 1, { message: "Bob's tile to go" });
  assert.deepEqual((await ann.state()).peers, []);
  await waitFor(
    async () =>
      (await metricValue(node.url, 'vc_client_ice_outcomes_total', { outcome: 'connected', candidate_type: 'host' })) >=
      outcomesBefore + 2,
    { message: 'final call reports from both sides' },
  );
});

test('mute and camera off are seen by the other side; a shared screen comes beside the camera', async (t) => {
  // 320x240 from the camera: 4:3, where the fake screen is 16:9.
  const { ann, bob } = await pairInCall(t, node.url, '?video=320x240');
  const remoteOnBob = () => bob.page.locator('.tile:not(.tile--local)');
  const annAsSeenByBob = async () => (await bob.state()).peers[0].remote;

  await ann.page.keyboard.press('m');
  await waitFor(async () => (await annAsSeenByBob()).audio === false, { message: 'Bob to see Ann muted' });
  await waitFor(async () => (await remoteOnBob().getAttribute('class')).includes('tile--muted'), { message: 'muted icon' });
  assert.equal(await ann.page.locator('#toggle-mic .control-label').innerText(), 'Unmute');
  await ann.page.click('#toggle-mic');
  await waitFor(async () => (await annAsSeenByBob()).audio === true, { message: 'Bob to see Ann unmuted' });

  await ann.page.click('#toggle-camera');
  await waitFor(async () => (await annAsSeenByBob()).video === false, { message: 'Bob to see Ann camera off' });
  await waitFor(async () => (await remoteOnBob().getAttribute('class')).includes('tile--camera-off'), { message: 'avatar' });
  assert.equal((await ann.mediaStats())[0].sendingVideoLabel, null, 'camera off sends no video');
  await ann.page.click('#toggle-camera');
  await waitFor(async () => (await annAsSeenByBob()).video === true, { message: 'Bob to see Ann camera on' });
  let before = await assertMediaKeepsFlowing(bob, await bob.mediaStats());
  const aspect = (stats) => stats[0].frameWidth / stats[0].frameHeight;
  assert.ok(Math.abs(aspect(before) - 4 / 3) < 0.05, `camera is 4:3, got ${before[0].frameWidth}x${before[0].frameHeight}`);
  const negotiationsBefore = (await bob.state()).peers[0].negotiations;

  // Sharing adds the screen as a second video track: Bob keeps Ann's face.
  const videos = () =>
    bob.page.evaluate(async () => {
      const { pc } = window.__vc.peerConnections()[0];
      const found = [];
      (await pc.getStats()).forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'video' && s.framesDecoded > 0) {
          found.push({ mid: s.mid, frames: s.framesDecoded, aspect: s.frameWidth / s.frameHeight });
        }
      });
      return found;
    });
  const both = (found) => found.find((v) => Math.abs(v.aspect - 4 / 3) < 0.05) && found.find((v) => Math.abs(v.aspect - 16 / 9) < 0.05);
  await ann.page.click('#toggle-screen');
  await waitFor(async () => (await annAsSeenByBob()).screen === true, { message: 'Bob to see the share' });
  const sharing = await waitFor(async () => {
    const found = await videos();
    return both(found) ? found : false;
  }, { message: "Bob to decode Ann's 4:3 camera and 16:9 screen at once" });
  await waitFor(async () => {
    const now = await videos();
    return sharing.every((old) => now.find((v) => v.mid === old.mid && v.frames > old.frames + 5));
  }, { message: 'both videos to keep playing' });
  assert.ok((await bob.state()).peers[0].negotiations > negotiationsBefore, 'the screen got an m-line of its own');

  // Who presents is said on both sides; the screen is on stage, clear of every tile.
  await waitFor(async () => (await ann.page.locator('.presenting').innerText().catch(() => '')) === 'You are presenting', {
    message: 'Ann told she presents',
  });
  await waitFor(async () => (await bob.page.locator('.presenting').innerText().catch(() => '')) === 'Ann Lee is presenting', {
    message: 'Bob told Ann presents',
  });
  const layout = await waitFor(
    () =>
      bob.page.evaluate(() => {
        const screen = document.querySelector('.tile--presentation');
        const video = screen?.querySelector('video');
        if (!video?.videoWidth) return false;
        const box = (element) => element.getBoundingClientRect().toJSON();
        return {
          screen: box(screen),
          presenter: screen.getAttribute('aria-label'),
          others: [...document.querySelectorAll('.tile:not(.tile--presentation)')].map(box),
        };
      }),
    { message: "Ann's screen on Bob's stage" },
  );
  assert.equal(layout.presenter, 'Ann Lee\u2019s screen');
  const overlaps = (a, b) => a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
  assert.equal(layout.others.length, 2, "Bob's self-view and Ann's camera");
  for (const other of layout.others) assert.ok(!overlaps(layout.screen, other), `a tile covers the screen: ${JSON.stringify(layout)}`);
  const violations = await accessibilityViolations(bob.page);
  t.diagnostic(`axe while presenting: ${violations.length} violations, ${blocking(violations).length} serious or critical`);
  assert.deepEqual(blocking(violations), []);

  await ann.page.click('#toggle-screen');
  await waitFor(async () => (await annAsSeenByBob()).screen === false, { message: 'Bob to see the share end' });
  await waitFor(async () => (await bob.page.locator('.tile--presentation').count()) === 0, { message: 'the screen tile to go' });
  before = await bob.mediaStats();
  await assertMediaKeepsFlowing(bob, before);
  assert.equal(await bob.page.locator('.presenting').isVisible(), false);
});

test('the node restarts mid-call: media keeps flowing, the pages join again and renegotiate', async (t) => {
  const restartable = await startNode(stack, { id: 'restart' });
  const { ann, bob, annMedia } = await pairInCall(t, restartable.url);
  const oldIds = { ann: (await ann.state()).peerId, bob: (await bob.state()).peerId };

  await restartable.service.stop('SIGKILL');
  await waitFor(async () => (await ann.page.locator('#signaling-status').getAttribute('data-state')) === 'reconnecting', {
    message: 'Ann to show reconnecting',
  });
  // Signaling is down; the established call is not.
  await assertMediaKeepsFlowing(ann, annMedia.stats);

  // A fresh node knows nothing of the seats: resume fails, the pages join again.
  await startNode(stack, { id: 'restart', port: restartable.port });
  await waitFor(
    async () => {
      const [a, b] = await Promise.all([ann.state(), bob.state()]);
      return a.signaling === 'connected' && b.signaling === 'connected' && a.peerId !== oldIds.ann && b.peerId !== oldIds.bob;
    },
    { timeoutMs: 20_000, message: 'both pages to join again as new peers' },
  );
  const [again] = await Promise.all([waitForMediaFromAll(ann, 1), waitForMediaFromAll(bob, 1)]);
  assert.equal(again.stats[0].peerId, (await bob.state()).peerId);
  assert.equal(await ann.page.locator('.tile').count(), 2, 'one tile per person, no leftovers');
});

test('joining with the camera off, then turning it on, renegotiates and the other side decodes it', async (t) => {
  const room = roomName('late-camera');
  const ann = await openCaller(browser, `${node.url}/r/${room}`, 'Ann Lee');
  const bob = await openCaller(browser, `${node.url}/r/${room}`, 'Bob Stone');
  t.after(() => Promise.all([ann.close(), bob.close()]));
  await ann.page.waitForFunction(() => window.__vc.media.state.video);
  await ann.page.click('.preview-controls button[aria-label="Turn off camera"]');
  await ann.join();
  await bob.join();
  await waitFor(async () => (await bob.state()).peers[0]?.remote.video === false, { message: 'Bob to see no camera' });
  await waitFor(async () => (await bob.state()).peers[0]?.connectionState === 'connected', { message: 'the call to connect' });
  assert.equal((await bob.mediaStats())[0].framesDecoded, 0, 'no video was ever sent');
  const negotiated = (await bob.state()).peers[0].negotiations;

  await ann.page.click('#toggle-camera');
  await waitFor(async () => (await bob.state()).peers[0].negotiations > negotiated, {
    message: 'a renegotiation for the new video track',
  });
  await waitForMediaFromAll(bob, 1);
  assert.equal((await bob.state()).peers[0].remote.video, true);
});

test('glare: both sides renegotiate at once and perfect negotiation settles it', async (t) => {
  const { ann, bob } = await pairInCall(t, node.url);
  // Hold each side's next offer until both have made one, so that they cross.
  const holdOffers = () =>
    window.__vc.peerConnections()[0].link.pc.signalingState === 'stable' &&
    (() => {
      const client = window.__vc.call.client;
      const send = client.sendOffer.bind(client);
      window.__heldOffers = [];
      client.sendOffer = (to, sdp) => window.__heldOffers.push([to, sdp]);
      window.__releaseOffers = () => {
        client.sendOffer = send;
        for (const [to, sdp] of window.__heldOffers) send(to, sdp);
      };
      return true;
    })();
  assert.ok(await ann.page.evaluate(holdOffers));
  assert.ok(await bob.page.evaluate(holdOffers));
  const [annBefore, bobBefore] = [(await ann.state()).peers[0], (await bob.state()).peers[0]];

  for (const caller of [ann, bob]) await caller.page.evaluate(() => window.__vc.peerConnections()[0].link.restartIce());
  for (const caller of [ann, bob]) {
    await waitFor(() => caller.page.evaluate(() => window.__heldOffers.length === 1), { message: `${caller.name}'s offer` });
  }
  // Hold each side's incoming offer too, until both have arrived: released one
  // after the other, the first offer could otherwise be answered before the
  // second is sent, and the offers would not cross on both sides.
  const holdIncomingOffer = () => {
    const { link } = window.__vc.peerConnections()[0];
    const handle = link.handleDescription.bind(link);
    window.__incomingOffers = [];
    link.handleDescription = (description) =>
      description.type === 'offer' ? window.__incomingOffers.push(description) : handle(description);
    window.__deliverIncomingOffers = () => {
      link.handleDescription = handle;
      for (const description of window.__incomingOffers) handle(description);
    };
  };
  for (const caller of [ann, bob]) await caller.page.evaluate(holdIncomingOffer);
  for (const caller of [ann, bob]) await caller.page.evaluate(() => window.__releaseOffers());
  for (const caller of [ann, bob]) {
    await waitFor(() => caller.page.evaluate(() => window.__incomingOffers.length === 1), {
      message: `the other side's offer to reach ${caller.name}`,
    });
  }
  for (const caller of [ann, bob]) await caller.page.evaluate(() => window.__deliverIncomingOffers());

  const settled = async (caller) => {
    const pc = await caller.page.evaluate(() => {
      const { pc } = window.__vc.peerConnections()[0];
      return { signaling: pc.signalingState, connection: pc.connectionState };
    });
    return pc.signaling === 'stable' && pc.connection === 'connected';
  };
  // The impolite side ignores the offer that crossed its own; the polite side drops
  // its own and answers. Both end stable, connected, with a completed exchange.
  await waitFor(
    async () =>
      (await settled(ann)) &&
      (await settled(bob)) &&
      (await ann.state()).peers[0].negotiations > annBefore.negotiations &&
      (await bob.state()).peers[0].negotiations > bobBefore.negotiations,
    { message: 'both sides to settle after the glare' },
  );
  const [annAfter, bobAfter] = [(await ann.state()).peers[0], (await bob.state()).peers[0]];
  assert.equal(annAfter.collisions, annBefore.collisions + 1, 'Ann saw the offers cross');
  assert.equal(bobAfter.collisions, bobBefore.collisions + 1, 'Bob saw the offers cross');
  assert.notEqual(annAfter.polite, bobAfter.polite, 'exactly one side is polite');
  await Promise.all([assertMediaKeepsFlowing(ann, await ann.mediaStats()), assertMediaKeepsFlowing(bob, await bob.mediaStats())]);
});

test('switching camera and microphone mid-call keeps the other side receiving', async (t) => {
  const { ann, bob } = await pairInCall(t, node.url);
  const [before] = await ann.mediaStats();

  await ann.page.click('#open-settings');
  const dialog = ann.page.locator('dialog.settings');
  await dialog.waitFor();
  const cameras = await dialog.locator('select[id^="camera-select"] option').allInnerTexts();
  const microphones = await dialog.locator('select[id^="microphone-select"] option').allInnerTexts();
  // Chromium's fake_device_1 imitates a depth camera (16-bit grey frames, which no
  // video encoder takes); fake_device_2 is an ordinary one.
  const otherCamera = cameras.find((label) => label === 'fake_device_2');
  const otherMicrophone = microphones.find((label) => label !== before.sendingAudioLabel && !label.includes('Default'));
  assert.ok(otherCamera && otherMicrophone, `a second camera and microphone: ${cameras} / ${microphones}`);

  await dialog.locator('select[id^="camera-select"]').selectOption({ label: otherCamera });
  await dialog.locator('select[id^="microphone-select"]').selectOption({ label: otherMicrophone });
  await waitFor(
    async () => {
      const [now] = await ann.mediaStats();
      return now.sendingVideoLabel === otherCamera && now.sendingAudioLabel === otherMicrophone;
    },
    { message: 'Ann to send from the other devices' },
  );
  await dialog.locator('button', { hasText: 'Done' }).click();
  await dialog.waitFor({ state: 'hidden' });
  // Measured from after the switch: frames and packets from the new devices.
  await assertMediaKeepsFlowing(bob, await bob.mediaStats());
});
