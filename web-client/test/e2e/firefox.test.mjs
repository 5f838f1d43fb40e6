// The calling page in Firefox ESR, calling Firefox and Chromium: the page must not
// depend on one engine's WebRTC.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { Stack, launchBrowser, launchFirefox, openCaller, roomName, startNode, waitForMediaFromAll } from './harness.mjs';

const stack = new Stack();
let node;
let firefox;
let chromium;

before(async () => {
  [node, firefox, chromium] = await Promise.all([startNode(stack, { id: 'fx' }), launchFirefox(stack), launchBrowser(stack)]);
});

after(() => stack.cleanup());

for (const [label, other] of [
  ['Firefox', () => firefox],
  ['Chromium', () => chromium],
]) {
  test(`Firefox calls ${label}: both sides decode video and receive audio`, async (t) => {
    const room = roomName('fx');
    const ann = await openCaller(firefox, `${node.url}/r/${room}?video=320x240`, 'Ann Lee');
    const bob = await openCaller(other(), `${node.url}/r/${room}?video=320x240`, 'Bob Stone');
    t.after(() => Promise.all([ann.close(), bob.close()]));
    await ann.join();
    await bob.join();
    const [annMedia, bobMedia] = await Promise.all([
      waitForMediaFromAll(ann, 1, { timeoutMs: 30_000 }),
      waitForMediaFromAll(bob, 1, { timeoutMs: 30_000 }),
    ]);
    t.diagnostic(`join to first decoded frame: Bob ${bobMedia.firstMediaAt - bob.joinedAt} ms`);
    assert.equal(annMedia.stats[0].name, 'Bob Stone');
    assert.equal(bobMedia.stats[0].name, 'Ann Lee');
    // A direct pair: the one address is a host candidate, or peer-reflexive when
    // the other side's connectivity check arrived before its trickled candidate.
    assert.ok(['host', 'prflx'].includes(annMedia.stats[0].localCandidateType), annMedia.stats[0].localCandidateType);
    assert.ok(['host', 'prflx'].includes(bobMedia.stats[0].remoteCandidateType), bobMedia.stats[0].remoteCandidateType);
    assert.deepEqual(ann.errors, []);
    assert.deepEqual(bob.errors, []);
  });
}
