// What a person sees when things go wrong: a blocked camera, a full room, a
// refused invitation, an unreachable server.

import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { after, before, test } from 'node:test';

import {
  Stack,
  accessibilityViolations,
  blocking,
  launchBrowser,
  openCaller,
  roomName,
  startNode,
  waitFor,
  waitForMediaFromAll,
} from './harness.mjs';

const stack = new Stack();
const JWT_SECRET = 'a-test-secret-of-at-least-32-bytes!!';
const MEDIA = ['camera', 'microphone'];
let browser;

before(async () => {
  // No blanket permission grant here: each context gets camera access or not.
  browser = await launchBrowser(stack, { fakeUi: false });
});

after(() => stack.cleanup());

async function assertAccessible(t, page, screen) {
  const violations = await accessibilityViolations(page);
  t.diagnostic(`axe ${screen}: ${violations.length} violations, ${blocking(violations).length} serious or critical`);
  assert.deepEqual(blocking(violations), [], `serious or critical accessibility violations on ${screen}`);
}

const lobbyAlert = (caller) => caller.page.locator('.lobby-card .alert').innerText();

function jwt(claims) {
  const encode = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const unsigned = `${encode({ alg: 'HS256', typ: 'JWT' })}.${encode(claims)}`;
  return `${unsigned}.${createHmac('sha256', JWT_SECRET).update(unsigned).digest('base64url')}`;
}

test('camera and microphone blocked: the person is told, joins anyway, and still sees and hears the others', async (t) => {
  const node = await startNode(stack, { id: 'blocked' });
  const room = roomName('blocked');
  const ann = await openCaller(browser, `${node.url}/r/${room}`, 'Ann Lee', { permissions: MEDIA });
  const bob = await openCaller(browser, `${node.url}/r/${room}`, 'Bob Stone');
  t.after(() => Promise.all([ann.close(), bob.close()]));

  await waitFor(async () => (await bob.page.locator('.media-notice').isVisible()) && bob.page.locator('.media-notice').innerText(), {
    message: 'the blocked-devices notice',
  }).then((text) => assert.match(text, /Camera and microphone are blocked/));
  await assertAccessible(t, bob.page, 'lobby, devices blocked');

  await ann.join();
  await bob.join();
  // Bob sends nothing but receives everything.
  await waitForMediaFromAll(bob, 1);
  await waitFor(
    async () => {
      const remote = (await ann.state()).peers[0]?.remote;
      return remote && remote.audio === false && remote.video === false;
    },
    { message: 'Ann to see Bob without camera and microphone' },
  );
  assert.match(await ann.page.locator('.tile:not(.tile--local)').getAttribute('class'), /tile--camera-off/);
});

test('a full room says so, and the person can try again from the lobby', async (t) => {
  const node = await startNode(stack, { id: 'small', env: { VC_ROOMS__CAPACITY: '2' } });
  const room = roomName('full');
  const callers = [];
  for (const name of ['Ann Lee', 'Bob Stone', 'Cleo Park']) {
    callers.push(await openCaller(browser, `${node.url}/r/${room}`, name, { permissions: MEDIA }));
  }
  t.after(() => Promise.all(callers.map((caller) => caller.close())));
  const [ann, bob, cleo] = callers;
  await ann.join();
  await bob.join();

  await cleo.page.fill('#display-name', cleo.name);
  await cleo.page.click('#join-button');
  await waitFor(async () => (await lobbyAlert(cleo).catch(() => '')).includes('This call is full'), {
    message: 'the room-full message',
  });
  assert.equal(await cleo.page.locator('#join-button').isEnabled(), true, 'Join can be pressed again');
  await assertAccessible(t, cleo.page, 'lobby, room full');

  // Once someone leaves, the same button gets Cleo in.
  await bob.page.click('#leave-call');
  await waitFor(async () => (await ann.state()).peers.length === 0, { message: 'Bob to be gone' });
  await cleo.page.click('#join-button');
  await cleo.page.waitForSelector('.call');
  await waitForMediaFromAll(cleo, 1);
});

test('invitations: a missing, wrong-room or valid token', async (t) => {
  const node = await startNode(stack, {
    id: 'guarded',
    env: { VC_AUTH__MODE: 'jwt', VC_AUTH__JWT_SECRET: JWT_SECRET },
  });
  const room = roomName('guarded');
  const exp = Math.floor(Date.now() / 1000) + 600;

  const uninvited = await openCaller(browser, `${node.url}/r/${room}`, 'Ann Lee', { permissions: MEDIA });
  t.after(() => uninvited.close());
  await uninvited.page.fill('#display-name', uninvited.name);
  await uninvited.page.click('#join-button');
  await waitFor(async () => (await lobbyAlert(uninvited).catch(() => '')).includes('This call needs an invitation'), {
    message: 'the invitation-required message',
  });

  const elsewhere = jwt({ sub: 'ann', room: 'another-room', exp });
  const misdirected = await openCaller(browser, `${node.url}/r/${room}?token=${elsewhere}`, 'Ann Lee', { permissions: MEDIA });
  t.after(() => misdirected.close());
  await misdirected.page.fill('#display-name', misdirected.name);
  await misdirected.page.click('#join-button');
  await waitFor(async () => (await lobbyAlert(misdirected).catch(() => '')).includes('This invitation is for another call'), {
    message: 'the wrong-room message',
  });

  const valid = jwt({ sub: 'ann', room, name: 'Dr. Ann Lee', exp });
  const invited = await openCaller(browser, `${node.url}/r/${room}?token=${valid}`, 'Ann', { permissions: MEDIA });
  t.after(() => invited.close());
  await invited.join();
  // The name in the invitation wins over the one typed.
  assert.match(await invited.page.locator('.tile--local .tile-name').innerText(), /Dr\. Ann Lee \(you\)/);
});

test('server unreachable: the lobby says so and joins once the server is back', async (t) => {
  const node = await startNode(stack, { id: 'flaky' });
  const room = roomName('flaky');
  const ann = await openCaller(browser, `${node.url}/r/${room}`, 'Ann Lee', { permissions: MEDIA });
  t.after(() => ann.close());

  await node.service.stop('SIGKILL');
  await ann.page.fill('#display-name', ann.name);
  await ann.page.click('#join-button');
  await waitFor(async () => /Can.t reach the server/.test(await ann.page.locator('.lobby-status').innerText()), {
    message: 'the unreachable message',
  });
  await assertAccessible(t, ann.page, 'lobby, server unreachable');

  await startNode(stack, { id: 'flaky', port: node.port });
  await ann.page.waitForSelector('.call', { timeout: 15_000 });
  assert.equal((await ann.state()).signaling, 'connected');
});
