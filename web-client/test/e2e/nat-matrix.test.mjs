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
import { X509Certificate, createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { Stack, openCaller, roomName, startNode, startTurn, waitFor, waitForMediaFromAll } from './harness.mjs';
import { Netlab, SERVER_ADDRESS, TURN_HOST, netlabUnavailable, removeLeftovers } from './netlab.mjs';

/** Why this file cannot run here, or null. */
function missingTools() {
  for (const tool of ['openssl', 'certutil', 'turnserver']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' }).status !== 0) return `needs ${tool}`;
  }
  return null;
}

const unavailable = netlabUnavailable() ?? missingTools();
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

/** The two hosts, A and B, each with a Chromium and a Firefox ESR that live through every case. */
const hosts = [];
const browsers = { chromium: [], firefox: [] };

// Four browsers start at once: bounded, though slow on a busy machine.
before(async () => {
  if (unavailable) return;
  removeLeftovers();
  lab = new Netlab(stack);
  const tls = turnCertificate(stack.tempDir('turn-tls'));
  authorityPem = tls.authority;
  secret = randomBytes(24).toString('hex');
  hosts.push(lab.host('a'), lab.host('b'));
  // Chromium checks the TURN server's certificate as it would a web site's: it is
  // told to accept this one by the hash of its public key, nothing else.
  const turnKey = new X509Certificate(readFileSync(tls.certFile)).publicKey.export({ type: 'spki', format: 'der' });
  const chromiumArgs = [
    `--unsafely-treat-insecure-origin-as-secure=${ORIGIN}`,
    `--ignore-certificate-errors-spki-list=${createHash('sha256').update(turnKey).digest('base64')}`,
  ];
  // The page's plain-HTTP origin counts as secure, as localhost would: camera, crypto.subtle.
  const firefoxPrefs = { 'dom.securecontext.allowlist': SERVER_ADDRESS };
  const [chromiumA, firefoxA, chromiumB, firefoxB] = await Promise.all([
    hosts[0].launchChromium(stack, { args: chromiumArgs }),
    hosts[0].launchFirefox(stack, { userDataDir: firefoxProfile(stack), prefs: firefoxPrefs }),
    hosts[1].launchChromium(stack, { args: chromiumArgs }),
    hosts[1].launchFirefox(stack, { userDataDir: firefoxProfile(stack), prefs: firefoxPrefs }),
    startTurn(stack, { secret, host: lab.serverHost(), tls }),
  ]);
  browsers.chromium.push(chromiumA, chromiumB);
  browsers.firefox.push(firefoxA, firefoxB);
}, { timeout: 120_000 });

after(() => stack.cleanup(), { timeout: 60_000 });

/** Chromium to Chromium, Firefox ESR to Firefox ESR, Chromium (on A) to Firefox ESR (on B). */
const PAIRS = [
  ['Chromium', 'Chromium'],
  ['Firefox', 'Firefox'],
  ['Chromium', 'Firefox'],
];

function browserOf(label, side) {
  return (label === 'Chromium' ? browsers.chromium : browsers.firefox)[side];
}

function describePair(stats) {
  const local = stats.localCandidateType + (stats.localRelayProtocol ? `/${stats.localRelayProtocol}` : '');
  return `local ${local}, remote ${stats.remoteCandidateType}`;
}

/** Connects the hosts as the case says and starts a node handing out its ICE servers; undone by `caseStack`. */
async function setUp(caseStack, { networks, turnUrls }) {
  networks.forEach((network, i) => lab.connect(hosts[i], network, caseStack));
  const env = { VC_ICE__STUN_URLS: ICE.stun };
  if (turnUrls.length) Object.assign(env, { VC_ICE__TURN_URLS: turnUrls.join(','), VC_ICE__TURN_SECRET: secret });
  await startNode(caseStack, { id: 'netlab', host: lab.serverHost(), port: NODE_PORT, env });
}

/** Ann on host A in `first`, Bob on host B in `second`, both in a fresh room and joined. */
async function joinCall([first, second]) {
  const url = `${ORIGIN}/r/${roomName('nat')}?video=320x240`;
  const [ann, bob] = await Promise.all([
    openCaller(browserOf(first, 0), url, 'Ann Lee'),
    openCaller(browserOf(second, 1), url, 'Bob Stone'),
  ]);
  try {
    for (const caller of [ann, bob]) {
      assert.equal(await caller.page.evaluate(() => window.isSecureContext), true, `${caller.name}'s page is a secure context`);
    }
    await ann.join();
    await bob.join();
  } catch (err) {
    await Promise.all([ann.close(), bob.close()]);
    throw err;
  }
  return { ann, bob, close: () => Promise.all([ann.close(), bob.close()]) };
}

/**
 * A call from host A's `first` browser to host B's `second` that must connect:
 * media both ways, then `expect(stats, side)` on each side's selected pair.
 * Prints the matrix line.
 */
async function connectingCall(pair, caseName, expect) {
  const { ann, bob, close } = await joinCall(pair);
  try {
    const [annMedia, bobMedia] = await Promise.all([
      waitForMediaFromAll(ann, 1, { timeoutMs: 30_000 }),
      waitForMediaFromAll(bob, 1, { timeoutMs: 30_000 }),
    ]);
    // ICE may send over the first pair that works (a relay, say) and move to a
    // better one when its checks succeed: judge the pair once it has settled.
    const settled = await waitFor(
      async () => {
        const [[a], [b]] = await Promise.all([ann.mediaStats(), bob.mediaStats()]);
        try {
          expect(a, 'A');
          expect(b, 'B');
          return { a, b };
        } catch {
          return false;
        }
      },
      { timeoutMs: 10_000, intervalMs: 250, message: 'the selected pairs to settle' },
    ).catch(() => ({ a: annMedia.stats[0], b: bobMedia.stats[0] }));
    const { a, b } = settled;
    console.log(
      `NAT matrix | ${caseName} | ${pair[0]} (A) to ${pair[1]} (B) | connected | ` +
        `A: ${describePair(a)} | B: ${describePair(b)} | second join to first decoded frame: ` +
        `A ${annMedia.firstMediaAt - bob.joinedAt} ms, B ${bobMedia.firstMediaAt - bob.joinedAt} ms`,
    );
    assert.equal(a.name, 'Bob Stone');
    assert.equal(b.name, 'Ann Lee');
    assert.ok(a.frameWidth > 0 && b.frameWidth > 0, 'both sides decode frames with a size');
    expect(a, 'A');
    expect(b, 'B');
    assert.deepEqual(ann.errors, []);
    assert.deepEqual(bob.errors, []);
  } finally {
    await close();
  }
}

const options = (timeout) => ({ skip: unavailable ?? false, timeout });

/**
 * A case whose calls must connect: the hosts' networks, the TURN URLs the node
 * hands out besides STUN, and what each side's selected pair must be.
 */
function connectingCase(title, { caseName, networks, turnUrls, expect }) {
  test(title, options(150_000), async (t) => {
    const caseStack = new Stack();
    t.after(() => caseStack.cleanup());
    await setUp(caseStack, { networks, turnUrls });
    for (const pair of PAIRS) await connectingCall(pair, caseName, expect);
  });
}

const RELAY = 'relay';
const DIRECT_VIA_NAT = new Set(['srflx', 'prflx']);

connectingCase('both peers on the public network: a pair of host candidates', {
  caseName: 'public network',
  networks: ['public', 'public'],
  turnUrls: [ICE.turnUdp],
  expect(stats) {
    assert.equal(stats.localCandidateType, 'host', describePair(stats));
    assert.ok(['host', 'prflx'].includes(stats.remoteCandidateType), describePair(stats));
  },
});

connectingCase('both behind endpoint-independent NATs: a server-reflexive pair, no relay', {
  caseName: 'endpoint-independent NATs',
  networks: [{ nat: 'endpoint-independent' }, { nat: 'endpoint-independent' }],
  // A relay is offered, and must not be needed.
  turnUrls: [ICE.turnUdp],
  expect(stats) {
    const types = [stats.localCandidateType, stats.remoteCandidateType];
    assert.ok(!types.includes(RELAY), `no relay: ${describePair(stats)}`);
    assert.ok(types.some((type) => DIRECT_VIA_NAT.has(type)), `through the NATs' mappings: ${describePair(stats)}`);
  },
});

const throughRelay = (stats) => {
  assert.ok([stats.localCandidateType, stats.remoteCandidateType].includes(RELAY), `a relay: ${describePair(stats)}`);
};

connectingCase('one peer behind a symmetric NAT: a TURN relay pair', {
  caseName: 'symmetric NAT and endpoint-independent NAT',
  networks: [{ nat: 'symmetric' }, { nat: 'endpoint-independent' }],
  turnUrls: [ICE.turnUdp],
  expect: throughRelay,
});

connectingCase('both peers behind symmetric NATs: a TURN relay pair', {
  caseName: 'symmetric NATs',
  networks: [{ nat: 'symmetric' }, { nat: 'symmetric' }],
  turnUrls: [ICE.turnUdp],
  expect: throughRelay,
});

for (const [protocol, url] of [
  ['tcp', ICE.turnTcp],
  ['tls', ICE.turnTls],
]) {
  connectingCase(`UDP blocked on one side: TURN over ${protocol.toUpperCase()}${protocol === 'tls' ? ' (turns:)' : ''}`, {
    caseName: `UDP blocked, TURN over ${protocol.toUpperCase()}`,
    networks: [{ nat: 'endpoint-independent', blockUdp: true }, { nat: 'endpoint-independent' }],
    turnUrls: [url],
    expect(stats, side) {
      throughRelay(stats);
      if (side === 'A') {
        // The side without UDP reaches its TURN server over the one transport it was given.
        assert.equal(stats.localCandidateType, RELAY, describePair(stats));
        assert.equal(stats.localRelayProtocol, protocol, describePair(stats));
      }
    },
  });
}

/** Notes in the page when the other person's tile first shows a problem, as `window.problemShownAt`. */
function notingWhenProblemShows(caller) {
  return caller.page.evaluate(() => {
    const observer = new MutationObserver(() => {
      if (document.querySelector('.tile:not(.tile--local) .tile-problem')?.textContent.trim()) {
        window.problemShownAt = Date.now();
        observer.disconnect();
      }
    });
    observer.observe(document.body, { subtree: true, childList: true, characterData: true });
  });
}

/**
 * A joined call (`joinCall`, watched by `notingWhenProblemShows`) that cannot connect: both pages must say why, in the
 * tile of the other person and in a live region, and wait before trying again
 * rather than cycle. Prints the matrix line, with the time from the second join
 * to each message.
 */
async function assertExplainedFailure({ pair, ann, bob }, caseName) {
  const explained = (caller) =>
    waitFor(
      () =>
        caller.page.evaluate(() => {
          const problem = document.querySelector('.tile:not(.tile--local) .tile-problem');
          const text = problem?.textContent.trim();
          if (!text) return false;
          const { link } = window.__vc.peerConnections()[0];
          return {
            text,
            role: problem.getAttribute('role'),
            live: problem.getAttribute('aria-live'),
            cause: link.problem,
            state: link.pc.connectionState,
            failures: link.iceFailures,
            restarts: link.iceRestarts,
            waitMs: link.lastRetryDelayMs,
            at: window.problemShownAt,
          };
        }),
      { timeoutMs: 60_000, intervalMs: 250, message: `${caller.name}'s page to explain the failed connection` },
    );
  const [a, b] = await Promise.all([explained(ann), explained(bob)]);
  const [[annStats], [bobStats]] = await Promise.all([ann.mediaStats(), bob.mediaStats()]);
  console.log(
    `NAT matrix | ${caseName} | ${pair[0]} (A) to ${pair[1]} (B) | not connected, as it must | ` +
      `second join to the explanation: A ${a.at - bob.joinedAt} ms, B ${b.at - bob.joinedAt} ms | ` +
      `wait before the next try: A ${a.waitMs} ms, B ${b.waitMs} ms`,
  );
  for (const [who, seen, other] of [
    ['Ann', a, 'Bob Stone'],
    ['Bob', b, 'Ann Lee'],
  ]) {
    assert.equal(seen.cause, 'no-relay', `${who}'s page knows why`);
    assert.match(seen.text, new RegExp(`^Can\u2019t connect to ${other}`), `${who}'s tile names the other person`);
    assert.match(seen.text, /blocks a direct connection, and no relay server is configured/, seen.text);
    assert.equal(seen.role, 'status', `${who}'s message is announced`);
    assert.equal(seen.live, 'polite', `${who}'s message is announced`);
    // Each failure waits before the next attempt (8 s ± 20 % after the first, more
    // after the next ones): no restart at once, cycling checks every few seconds.
    assert.ok(seen.failures >= 1 && seen.waitMs >= 6400, `${who}'s page waits before trying again: ${JSON.stringify(seen)}`);
  }
  for (const stats of [annStats, bobStats]) assert.equal(stats.framesDecoded, 0, 'no media got through');
  // Firefox reports the failure itself on the page's console, as an error.
  const ours = (errors) => errors.filter((message) => !message.startsWith('WebRTC: ICE failed, add a TURN server'));
  assert.deepEqual(ours(ann.errors), []);
  assert.deepEqual(ours(bob.errors), []);
}

test('no TURN configured and a symmetric NAT: the call fails and the page says why', options(120_000), async (t) => {
  const caseStack = new Stack();
  t.after(() => caseStack.cleanup());
  await setUp(caseStack, { networks: [{ nat: 'symmetric' }, { nat: 'endpoint-independent' }], turnUrls: [] });
  // Nothing flows, so the three calls can wait for their ICE failures side by side. They
  // join one after the other: a page behind another one of its browser is slow to join.
  const calls = [];
  try {
    for (const pair of PAIRS) {
      const call = { pair, ...(await joinCall(pair)) };
      calls.push(call);
      await Promise.all([notingWhenProblemShows(call.ann), notingWhenProblemShows(call.bob)]);
    }
    await Promise.all(calls.map((call) => assertExplainedFailure(call, 'symmetric NAT, no TURN')));
  } finally {
    await Promise.all(calls.map((call) => call.close()));
  }
});
