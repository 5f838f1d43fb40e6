// A call as between two machines of one network: `vc-signaling serve --lan`, its
// self-signed certificate, and pages opened at an address of this machine that is
// not loopback, where browsers give the camera only to HTTPS. Each browser trusts
// that one certificate the way a person or an administrator would make it:
// Chromium by the hash of its public key, Firefox ESR by a profile whose
// certificate database trusts the authority that the node made with it (Firefox
// trusts a server certificate only through an authority). Neither is told to
// ignore certificate errors in general.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { X509Certificate, createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, test } from 'node:test';

import {
  Stack,
  launchBrowser,
  launchFirefox,
  openCaller,
  roomName,
  startNode,
  waitFor,
  waitForMediaFromAll,
} from './harness.mjs';

const stack = new Stack();
let origin;
let chromium;
let firefox;

function nonLoopbackIPv4() {
  return Object.values(os.networkInterfaces())
    .flat()
    .filter((a) => a.family === 'IPv4' && !a.internal)
    .map((a) => a.address);
}

function run(command, args) {
  const result = spawnSync(command, args, { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')}: ${result.stderr || result.error}`);
}

/**
 * An address of this machine that is not loopback: the machine's own, or, on a
 * machine with none, a veth pair of the test's with an address from a
 * documentation range, removed at cleanup.
 */
function ensureMachineAddress() {
  if (nonLoopbackIPv4().length > 0) return;
  const [a, b] = [`vct${process.pid % 100000}a`, `vct${process.pid % 100000}b`];
  run('ip', ['link', 'add', a, 'type', 'veth', 'peer', 'name', b]);
  stack.defer(() => run('ip', ['link', 'del', a]));
  run('ip', ['addr', 'add', `203.0.113.${1 + (process.pid % 250)}/32`, 'dev', a]);
  run('ip', ['link', 'set', a, 'up']);
  run('ip', ['link', 'set', b, 'up']);
}

/** What `serve --lan` printed: the URLs for other machines and the fingerprint. */
function printedHelp(service) {
  const text = readFileSync(service.logPath, 'utf8');
  const start = text.indexOf('Open one of these');
  if (start < 0) return null;
  const remote = [];
  for (const line of text.slice(start).split('\n').slice(1)) {
    if (!line.startsWith('  https://')) break;
    remote.push(line.trim());
  }
  const fingerprint = /fingerprint is\n\s+([0-9A-F:]{95})/.exec(text)?.[1];
  return fingerprint ? { remote, fingerprint } : null;
}

/**
 * The chain the node serves at `host:port`, taken without trusting it: its
 * certificate and the authority's.
 */
function servedChain(host, port) {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host, port, rejectUnauthorized: false }, () => {
      const detailed = socket.getPeerCertificate(true);
      socket.end();
      const issuer = detailed.issuerCertificate;
      if (!issuer || issuer === detailed) reject(new Error('the node sent no authority certificate'));
      else resolve({ cert: new X509Certificate(detailed.raw), authority: new X509Certificate(issuer.raw) });
    });
    socket.on('error', reject);
  });
}

/** A Firefox profile whose certificate database trusts `authority` for web sites. */
function firefoxProfileTrusting(authority) {
  const dir = stack.tempDir('firefox-profile');
  const pem = path.join(dir, 'authority.pem');
  writeFileSync(pem, authority.toString());
  run('certutil', ['-N', '-d', `sql:${dir}`, '--empty-password']);
  run('certutil', ['-A', '-n', 'Video Caller LAN authority', '-t', 'C,,', '-i', pem, '-d', `sql:${dir}`]);
  return dir;
}

before(async () => {
  ensureMachineAddress();
  const node = await startNode(stack, { id: 'lan', args: ['serve', '--lan'], https: true });
  const help = await waitFor(() => printedHelp(node.service), { timeoutMs: 5000, message: 'the printed URLs' });
  // The first URL for other machines that is an IPv4 address of this machine.
  const addresses = nonLoopbackIPv4();
  const url = help.remote.find((u) => addresses.includes(new URL(u).hostname));
  assert.ok(url, `no URL at ${addresses.join(', ')} among ${help.remote.join(', ')}`);
  origin = new URL(url).origin;
  const { hostname } = new URL(url);

  const { cert, authority } = await servedChain(hostname, node.port);
  assert.ok(cert.verify(authority.publicKey), 'the certificate is not signed by the authority sent with it');
  assert.equal(cert.checkIP(hostname), hostname, `the certificate does not cover ${hostname}`);
  assert.equal(cert.fingerprint256, help.fingerprint, 'the printed fingerprint is not the served certificate');
  const spki = createHash('sha256').update(cert.publicKey.export({ type: 'spki', format: 'der' })).digest('base64');

  [chromium, firefox] = await Promise.all([
    launchBrowser(stack, { args: [`--ignore-certificate-errors-spki-list=${spki}`] }),
    launchFirefox(stack, { userDataDir: firefoxProfileTrusting(authority) }),
  ]);
});

after(() => stack.cleanup());

/** Both pages are the node's, in a secure context: the one that gets a camera. */
async function assertSecure(caller) {
  const page = await caller.page.evaluate(() => ({ origin: location.origin, secure: window.isSecureContext }));
  assert.deepEqual(page, { origin, secure: true });
}

for (const [label, first] of [
  ['Chromium', () => chromium],
  ['Firefox ESR', () => firefox],
]) {
  test(`${label} calls Chromium over HTTPS at this machine's network address: video decoded both ways`, async (t) => {
    const room = roomName('lan');
    const ann = await openCaller(first(), `${origin}/r/${room}?video=320x240`, 'Ann Lee');
    const bob = await openCaller(chromium, `${origin}/r/${room}?video=320x240`, 'Bob Stone');
    t.after(() => Promise.all([ann.close(), bob.close()]));
    await Promise.all([assertSecure(ann), assertSecure(bob)]);
    await ann.join();
    await bob.join();
    const [annMedia, bobMedia] = await Promise.all([
      waitForMediaFromAll(ann, 1, { timeoutMs: 20_000 }),
      waitForMediaFromAll(bob, 1, { timeoutMs: 20_000 }),
    ]);
    assert.equal(annMedia.stats[0].name, 'Bob Stone');
    assert.equal(bobMedia.stats[0].name, 'Ann Lee');
    assert.ok(annMedia.stats[0].frameWidth > 0 && bobMedia.stats[0].frameWidth > 0);
    const figure =
      `join to first decoded frame over HTTPS (${label} to Chromium): ` +
      `Bob ${bobMedia.firstMediaAt - bob.joinedAt} ms, Ann ${annMedia.firstMediaAt - bob.joinedAt} ms after Bob's join`;
    t.diagnostic(figure);
    assert.deepEqual(ann.errors, []);
    assert.deepEqual(bob.errors, []);
  });
}
