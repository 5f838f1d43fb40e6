// What a person sees on the calling page beyond the call itself: the lobby's own
// checks, the 1:1 stage, status only when something is wrong, who is speaking,
// the people panel, connection quality, audio processing, safety codes, and an
// accessibility check of every screen. One call is shared by the tests that need
// two people, to keep the run short.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { Stack, launchBrowser, openCaller, roomName, startNode, waitFor, waitForMediaFromAll } from './harness.mjs';

const stack = new Stack();
let node;
let browser;

before(async () => {
  [node, browser] = await Promise.all([startNode(stack, { id: 'page' }), launchBrowser(stack)]);
});

after(() => stack.cleanup());

test('lobby: Start call without a name shows the page’s own message and marks the field invalid', async (t) => {
  const ann = await openCaller(browser, `${node.url}/`, 'Ann Lee');
  t.after(() => ann.close());
  await ann.page.fill('#display-name', '');
  await ann.page.click('#join-button');
  await waitFor(async () => (await ann.page.locator('.lobby-card .alert').innerText().catch(() => '')).includes('Please enter your name'), {
    message: 'the lobby’s own message',
  });
  assert.equal(await ann.page.locator('#display-name').getAttribute('aria-invalid'), 'true');
  assert.equal(await ann.page.evaluate(() => document.activeElement.id), 'display-name');
  assert.equal(await ann.page.evaluate(() => document.querySelector('.lobby-card').noValidate), true);
  assert.equal((await ann.state()).screen, 'lobby');
});

test('1:1 stage: the other person’s whole picture shows, and the status pill only when something is wrong', async (t) => {
  const restartable = await startNode(stack, { id: 'stage' });
  const room = roomName('stage');
  // 4:3 camera on a 16:9 stage: covering would crop top and bottom.
  const ann = await openCaller(browser, `${restartable.url}/r/${room}?video=320x240`, 'Ann Lee');
  const bob = await openCaller(browser, `${restartable.url}/r/${room}?video=320x240`, 'Bob Stone');
  t.after(() => Promise.all([ann.close(), bob.close()]));
  await ann.join();
  await bob.join();
  await waitForMediaFromAll(bob, 1);
  const shown = await waitFor(
    () =>
      bob.page.evaluate(() => {
        const video = document.querySelector('.tile:not(.tile--local) video');
        if (!video?.videoWidth) return false;
        const box = video.getBoundingClientRect();
        const fit = getComputedStyle(video).objectFit;
        const scale = (fit === 'cover' ? Math.max : Math.min)(box.width / video.videoWidth, box.height / video.videoHeight);
        return { shownWidth: video.videoWidth * scale, shownHeight: video.videoHeight * scale, box: { width: box.width, height: box.height } };
      }),
    { message: 'the remote video to play' },
  );
  assert.ok(shown.shownHeight <= shown.box.height + 0.5, `the picture fits the tile's height: ${JSON.stringify(shown)}`);
  assert.ok(shown.shownWidth <= shown.box.width + 0.5, `the picture fits the tile's width: ${JSON.stringify(shown)}`);

  assert.equal(await bob.page.locator('#signaling-status').isVisible(), false, 'no pill while connected');
  await restartable.service.stop('SIGKILL');
  await waitFor(() => bob.page.locator('#signaling-status').isVisible(), { message: 'the pill to show the trouble' });
  assert.match(await bob.page.locator('#signaling-status').innerText(), /Reconnecting|Connection lost/);
  await startNode(stack, { id: 'stage', port: restartable.port });
  await waitFor(async () => !(await bob.page.locator('#signaling-status').isVisible()), {
    timeoutMs: 20_000,
    message: 'the pill to go again',
  });
});
