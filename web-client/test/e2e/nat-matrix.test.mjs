// The NAT matrix: calls between browsers on emulated networks (netlab.mjs). The
// signaling node and coturn (STUN, TURN over UDP, TCP and TLS) sit on a "public"
// network; each browser runs in a host namespace that is either on that network
// or behind a NAT router of its own kind. For each kind of network, Chromium calls
// Chromium, Firefox ESR calls Firefox ESR and Chromium calls Firefox ESR; each call
// must decode video both ways over the kind of candidate pair that network allows,
// as getStats() reports it. Where no path exists (a symmetric NAT and no TURN),
// the page must say why instead of showing "Connecting…" forever.
//
// Each call prints one line, `NAT matrix | case | browsers | ...`, with the
// candidate types and the time from the second join to the first decoded frame.
// Needs root; skipped otherwise.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { Stack, openCaller, roomName, startNode, startTurn, waitFor, waitForMediaFromAll } from './harness.mjs';
import { Netlab, SERVER_ADDRESS, TURN_HOST, netlabUnavailable, removeLeftovers } from './netlab.mjs';

const unavailable = netlabUnavailable();
const NODE_PORT = 8080;
const ORIGIN = `http://${SERVER_ADDRESS}:${NODE_PORT}`;

const ICE = {
  stun: `stun:${SERVER_ADDRESS}:3478`,
  turnUdp: `turn:${SERVER_ADDRESS}:3478?transport=udp`,
  turnTcp: `turn:${SERVER_ADDRESS}:3478?transport=tcp`,
  turnTls: `turns:${TURN_HOST}:5349?transport=tcp`,
};

const stack = new Stack();
let lab;
let secret;
let authorityPem;

function run(command, args) {
  const result = spawnSync(command, args, { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')}: ${result.stderr || result.error}`);
}

/** An authority and a certificate for TURN_HOST that it signed, for coturn's TLS listener. */
function turnCertificate(dir) {
  const file = (name) => path.join(dir, name);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  run('openssl', [
    'req', '-x509', ...ec, '-keyout', file('ca.key'), '-out', file('ca.pem'), '-days', '2',
    '-subj', '/CN=Netlab test authority',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  run('openssl', ['req', ...ec, '-keyout', file('turn.key'), '-out', file('turn.csr'), '-subj', `/CN=${TURN_HOST}`]);
  writeFileSync(
    file('turn.ext'),
    `subjectAltName=DNS:${TURN_HOST}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n`,
  );
  run('openssl', [
    'x509', '-req', '-in', file('turn.csr'), '-CA', file('ca.pem'), '-CAkey', file('ca.key'), '-CAcreateserial',
    '-out', file('turn.pem'), '-days', '2', '-extfile', file('turn.ext'),
  ]);
  return { certFile: file('turn.pem'), keyFile: file('turn.key'), authority: file('ca.pem') };
}

/** A Firefox profile whose certificate database trusts the TURN server's authority. */
function firefoxProfile(caseStack) {
  const dir = caseStack.tempDir('firefox-profile');
  run('certutil', ['-N', '-d', `sql:${dir}`, '--empty-password']);
  run('certutil', ['-A', '-n', 'Netlab test authority', '-t', 'C,,', '-i', authorityPem, '-d', `sql:${dir}`]);
  return dir;
}

before(async () => {
  if (unavailable) return;
  removeLeftovers();
  lab = new Netlab(stack);
  const tls = turnCertificate(stack.tempDir('turn-tls'));
  authorityPem = tls.authority;
  secret = randomBytes(24).toString('hex');
  await startTurn(stack, { secret, host: lab.serverHost(), tls });
});

after(() => stack.cleanup());

/** The browsers of one case: Chromium and Firefox ESR on each of the two hosts. */
async function launchBrowsers(caseStack, hosts) {
  const chromiumArgs = [`--unsafely-treat-insecure-origin-as-secure=${ORIGIN}`];
  const firefoxPrefs = {
    // The page's plain-HTTP origin counts as secure, as localhost would: camera, crypto.subtle.
    'dom.securecontext.allowlist': SERVER_ADDRESS,
  };
  const launched = await Promise.all(
    hosts.flatMap((host) => [
      host.launchChromium(caseStack, { args: chromiumArgs }),
      host.launchFirefox(caseStack, { userDataDir: firefoxProfile(caseStack), prefs: firefoxPrefs }),
    ]),
  );
  return {
    chromium: [launched[0], launched[2]],
    firefox: [launched[1], launched[3]],
  };
}

const PAIRS = [
  ['Chromium', 'Chromium'],
  ['Firefox', 'Firefox'],
  ['Chromium', 'Firefox'],
];

function browserOf(browsers, label, side) {
  return (label === 'Chromium' ? browsers.chromium : browsers.firefox)[side];
}

function describePair(stats) {
  const local = stats.localCandidateType + (stats.localRelayProtocol ? `/${stats.localRelayProtocol}` : '');
  return `local ${local}, remote ${stats.remoteCandidateType}`;
}

/**
 * One call from host A's `first` browser to host B's `second`, asserting media
 * both ways; returns the selected pairs as each side sees them, and the times
 * from the second join to each side's first decoded frame.
 */
async function call(browsers, [first, second], { name }) {
  const room = roomName('nat');
  const url = `${ORIGIN}/r/${room}?video=320x240`;
  const ann = await openCaller(browserOf(browsers, first, 0), url, 'Ann Lee');
  const bob = await openCaller(browserOf(browsers, second, 1), url, 'Bob Stone');
  try {
    for (const caller of [ann, bob]) {
      assert.equal(await caller.page.evaluate(() => window.isSecureContext), true, `${caller.name}'s page is a secure context`);
    }
    await ann.join();
    await bob.join();
    const [annMedia, bobMedia] = await Promise.all([
      waitForMediaFromAll(ann, 1, { timeoutMs: 30_000 }),
      waitForMediaFromAll(bob, 1, { timeoutMs: 30_000 }),
    ]);
    const a = annMedia.stats[0];
    const b = bobMedia.stats[0];
    assert.equal(a.name, 'Bob Stone');
    assert.equal(b.name, 'Ann Lee');
    assert.ok(a.frameWidth > 0 && b.frameWidth > 0, 'both sides decode frames with a size');
    assert.deepEqual(ann.errors, []);
    assert.deepEqual(bob.errors, []);
    const result = {
      a,
      b,
      annMs: annMedia.firstMediaAt - bob.joinedAt,
      bobMs: bobMedia.firstMediaAt - bob.joinedAt,
    };
    console.log(
      `NAT matrix | ${name} | ${first} (A) to ${second} (B) | connected | ` +
        `A: ${describePair(a)} | B: ${describePair(b)} | ` +
        `second join to first decoded frame: A ${result.annMs} ms, B ${result.bobMs} ms`,
    );
    return result;
  } finally {
    await Promise.all([ann.close(), bob.close()]);
  }
}

/** Starts the case's hosts, node and browsers; undone by `caseStack`. */
async function setUp(caseStack, { sites, turnUrls }) {
  const hosts = sites.map((site, i) => {
    const name = i === 0 ? 'a' : 'b';
    return site === 'public' ? lab.publicHost(name, { stack: caseStack }) : lab.natHost(name, { ...site, stack: caseStack });
  });
  const env = { VC_ICE__STUN_URLS: ICE.stun };
  if (turnUrls.length) Object.assign(env, { VC_ICE__TURN_URLS: turnUrls.join(','), VC_ICE__TURN_SECRET: secret });
  const [browsers] = await Promise.all([
    launchBrowsers(caseStack, hosts),
    startNode(caseStack, { id: 'netlab', host: lab.serverHost(), port: NODE_PORT, env }),
  ]);
  return { hosts, browsers };
}

const options = (timeout) => ({ skip: unavailable ?? false, timeout });

test('both peers on the public network: a pair of host candidates', options(120_000), async (t) => {
  const caseStack = new Stack();
  t.after(() => caseStack.cleanup());
  const { browsers } = await setUp(caseStack, { sites: ['public', 'public'], turnUrls: [ICE.turnUdp] });
  for (const pair of PAIRS) {
    const { a, b } = await call(browsers, pair, { name: 'public network' });
    for (const side of [a, b]) {
      assert.equal(side.localCandidateType, 'host', describePair(side));
      assert.ok(['host', 'prflx'].includes(side.remoteCandidateType), describePair(side));
    }
  }
});
