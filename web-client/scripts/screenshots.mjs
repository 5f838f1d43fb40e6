// Takes the screenshots in docs/images from real calls: a node, Chromium with a
// fake camera, two, three or four people in a room, the chat, and the lobby.
//
//   node scripts/screenshots.mjs [output-dir] [--only=name,name]
//     output-dir: default ../docs/images
//     --only: just these scenes: pair (call-2peers, call-presenting), four
//       (call-4peers), three (call-people, call-chat), lobby

import { mkdirSync } from 'node:fs';
import path from 'node:path';

import {
  REPO_ROOT,
  Stack,
  launchBrowser,
  openCaller,
  roomName,
  startNode,
  waitFor,
  waitForMediaFromAll,
} from '../test/e2e/harness.mjs';

const args = process.argv.slice(2);
const only = args.find((arg) => arg.startsWith('--only='))?.slice('--only='.length).split(',') ?? null;
const scene = (name) => !only || only.includes(name);
const outputDir = path.resolve(args.find((arg) => !arg.startsWith('--')) ?? path.join(REPO_ROOT, 'docs/images'));
const viewport = { width: 1280, height: 720 };

async function callOf(browser, node, names, query = '') {
  const room = roomName('team-sync').replace(/-\d+-/, '-');
  const callers = [];
  for (const name of names) callers.push(await openCaller(browser, `${node.url}/r/${room}${query}`, name, { viewport }));
  for (const caller of callers) await caller.join();
  await Promise.all(callers.map((caller) => waitForMediaFromAll(caller, names.length - 1, { timeoutMs: 60_000 })));
  return callers;
}

async function settle(page) {
  // No "X joined" notices in the picture.
  await waitFor(async () => (await page.locator('.toast').count()) === 0, { timeoutMs: 10_000, message: 'notices to fade' });
}

const stack = new Stack();
try {
  mkdirSync(outputDir, { recursive: true });
  const [node, browser] = await Promise.all([startNode(stack, { id: 'shots' }), launchBrowser(stack)]);

  if (scene('pair')) {
    const pair = await callOf(browser, node, ['Maya Chen', 'Jonas Weber']);
    await pair[0].page.click('#toggle-stats');
    await waitFor(() => pair[0].page.locator('.tile-stats').first().innerText().then((text) => text.includes('UDP')), {
      message: 'stats to fill in',
    });
    await settle(pair[0].page);
    await pair[0].page.screenshot({ path: path.join(outputDir, 'call-2peers.png') });

    // Jonas shares his screen: on Maya's stage beside both faces.
    await pair[0].page.click('#toggle-stats');
    await pair[1].page.click('#toggle-screen');
    await waitFor(() => pair[0].page.evaluate(() => document.querySelector('.tile--presentation video')?.videoWidth > 0), {
      message: 'the shared screen',
    });
    await settle(pair[0].page);
    await pair[0].page.screenshot({ path: path.join(outputDir, 'call-presenting.png') });
    await Promise.all(pair.map((caller) => caller.close()));
  }

  if (scene('four')) {
    const four = await callOf(browser, node, ['Maya Chen', 'Jonas Weber', 'Aiko Tanaka', 'Sam Okafor'], '?video=640x360');
    await four[2].page.click('#toggle-mic');
    await waitFor(async () => (await four[0].page.locator('.tile--muted').count()) === 1, { message: 'the mute to show' });
    await settle(four[0].page);
    await four[0].page.screenshot({ path: path.join(outputDir, 'call-4peers.png') });
    await Promise.all(four.map((caller) => caller.close()));
  }

  if (scene('three')) {
    // Three people, Jonas pinned to the stage, the people panel with safety codes.
    const three = await callOf(browser, node, ['Maya Chen', 'Jonas Weber', 'Aiko Tanaka'], '?video=640x360');
    await three[0].page.keyboard.press('p');
    await three[0].page.click('.person-pin[aria-label="Pin Jonas Weber to the stage"]');
    await waitFor(
      async () => (await three[0].page.locator('.safety-code').allInnerTexts()).every((code) => /^\d{4} \d{4} \d{4}$/.test(code)),
      { message: 'safety codes' },
    );
    await settle(three[0].page);
    await three[0].page.screenshot({ path: path.join(outputDir, 'call-people.png') });

    // The chat beside the call: Jonas has raised his hand, Aiko reacts.
    await three[0].page.click('.person-pin[aria-label="Unpin Jonas Weber"]');
    await three[0].page.keyboard.press('l');
    await three[1].page.click('#toggle-hand');
    const say = async (caller, text) => {
      await caller.page.click('#toggle-chat');
      await caller.page.fill('#chat-input', text);
      await caller.page.keyboard.press('Enter');
      await caller.page.keyboard.press('Escape');
    };
    await say(three[1], 'Can everyone see the slides? I can share the link again.');
    await say(three[2], 'Yes, all good here 👍');
    await say(three[0], 'Same here. Jonas, go ahead with your question.');
    await three[0].page.keyboard.press('c');
    await waitFor(async () => (await three[0].page.locator('#chat-messages .chat-message').count()) === 3, { message: 'the three messages' });
    await settle(three[0].page);
    await three[2].page.click('#toggle-reactions');
    await three[2].page.click('.reaction-button[data-emoji="🎉"]');
    await three[0].page.locator('.tile-reaction').first().waitFor();
    await three[0].page.waitForTimeout(700);
    await three[0].page.screenshot({ path: path.join(outputDir, 'call-chat.png') });
    await Promise.all(three.map((caller) => caller.close()));
  }

  // The lobby, with the microphone meter moving.
  if (scene('lobby')) {
    const lobby = await openCaller(browser, `${node.url}/`, 'Maya Chen', { viewport });
    await lobby.page.click('#display-name');
    await lobby.page.fill('#display-name', 'Maya Chen');
    await waitFor(() => lobby.page.evaluate(() => document.querySelector('#mic-meter').value > 0.1), { message: 'the meter' });
    await lobby.page.screenshot({ path: path.join(outputDir, 'lobby.png') });
    await lobby.close();
  }
  console.log(`screenshots written to ${outputDir}`);
} finally {
  await stack.cleanup();
}
