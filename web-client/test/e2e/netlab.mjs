// Emulated networks for the browser tests, built from Linux network namespaces:
// a "public" network (a bridge) that holds the signaling node and coturn, hosts
// plugged straight into it, and hosts behind NAT routers of a chosen kind. Each
// browser runs inside one host's namespace, so the addresses, NAT mappings and
// filtering its WebRTC stack meets are those of that network, not the machine's.
//
// Only documentation ranges are used (198.51.100.0/24 public, 192.0.2.0/24 split
// into the private LANs, 203.0.113.254 as the gateway to nowhere), and only
// inside namespaces this process creates. docs/testing.md has the picture. Each
// namespace is named after this process (`vcnl<pid>-...`), removed by the Stack
// at cleanup, and removed at the start of a later run if its process is gone.
// Needs root (`ip netns`, `iptables`).

import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

import { CHROMIUM, FIREFOX, Service, launchBrowser, launchFirefox } from './harness.mjs';

/** The public network's /24, and the address of the server namespace on it. */
export const PUBLIC_PREFIX = '198.51.100';
export const SERVER_ADDRESS = `${PUBLIC_PREFIX}.1`;
/** The name the hosts' /etc/hosts gives SERVER_ADDRESS: `turns:` needs a name to check the certificate against. */
export const TURN_HOST = 'turn.netlab.test';
/** Where the public network sends what is for none of its hosts: nowhere. */
const INTERNET_GATEWAY = '203.0.113.254';
/** The private LANs are /27s of this /24, one per NAT router. */
const PRIVATE_PREFIX = '192.0.2';

const TAG = 'vcnl';

/** Why the emulated networks cannot be built here, or null when they can. */
export function netlabUnavailable() {
  if (process.getuid?.() !== 0) return 'needs root for network namespaces and iptables';
  for (const [tool, args] of [
    ['ip', ['-V']],
    ['iptables', ['--version']],
    ['curl', ['--version']],
  ]) {
    const probe = spawnSync(tool, args, { stdio: 'ignore' });
    if (probe.error || probe.status !== 0) return `needs ${tool} (apt-get install iproute2 iptables curl)`;
  }
  return null;
}

function run(command, args, { allowFailure = false } = {}) {
  const result = spawnSync(command, args, { encoding: 'utf8' });
  if (!allowFailure && (result.error || result.status !== 0)) {
    throw new Error(`${command} ${args.join(' ')}: ${result.stderr || result.error?.message || `status ${result.status}`}`);
  }
  return result.stdout ?? '';
}

/** Runs a command inside namespace `ns`, synchronously; throws with its stderr when it fails. */
export function inNamespace(ns, command, args, options) {
  return run('ip', ['netns', 'exec', ns, command, ...args], options);
}

function namespaces() {
  return run('ip', ['netns', 'list'], { allowFailure: true })
    .split('\n')
    .map((line) => line.split(' ')[0])
    .filter(Boolean);
}

function processAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return err.code === 'EPERM';
  }
}

/** Kills what still runs in `ns`, deletes it and its /etc/netns files. */
function removeNamespace(ns) {
  for (const pid of run('ip', ['netns', 'pids', ns], { allowFailure: true }).split('\n').filter(Boolean)) {
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
  run('ip', ['netns', 'del', ns], { allowFailure: true });
  rmSync(path.join('/etc/netns', ns), { recursive: true, force: true });
}

/**
 * Removes the namespaces (and their processes and /etc/netns files) that a run of
 * these tests left behind when it crashed: those named after a process that is gone.
 */
export function removeLeftovers() {
  const ours = new RegExp(`^${TAG}(\\d+)-`);
  const stale = (name) => {
    const match = ours.exec(name);
    return match && !processAlive(Number(match[1]));
  };
  for (const ns of namespaces().filter(stale)) removeNamespace(ns);
  let leftDirs = [];
  try {
    leftDirs = readdirSync('/etc/netns').filter(stale);
  } catch {
    // No /etc/netns at all.
  }
  for (const dir of leftDirs) rmSync(path.join('/etc/netns', dir), { recursive: true, force: true });
}

/**
 * What a NAT router does, the kinds of RFC 4787:
 * - `endpoint-independent`: one mapping per inside address and port, whatever the
 *   destination (MASQUERADE keeps the port); inbound only from where the host has
 *   sent to (conntrack), so a server-reflexive pair works after both sides punch.
 * - `symmetric`: a new mapping (a random port) for every destination, so the port
 *   a STUN server saw is useless to the peer: only a TURN relay gets through.
 * `blockUdp` drops every UDP datagram the router would forward: only TCP leaves.
 * @typedef {{nat: 'endpoint-independent' | 'symmetric', blockUdp?: boolean}} NatKind
 */

/**
 * A host: a namespace of its own, where its browsers run, and the network it is
 * connected to at the moment (`Netlab.connect`), which may change between calls
 * while its processes keep running, as a laptop moves between networks.
 */
export class Host {
  /** Its IPv4 address, null while it is connected to nothing. */
  address = null;
  /** What it is connected to, in words: `public network`, `symmetric NAT`... */
  label = 'not connected';
  /** Its NAT router while it has one: `{ns, wan, nat, blockUdp}`. */
  router = null;
  /** Which `Netlab.connect` made the current connection. */
  connection = 0;

  constructor(ns) {
    this.ns = ns;
  }

  /**
   * A child process inside this host's namespace, with its output in a log file.
   * @param {import('./harness.mjs').Stack} stack
   */
  spawn(stack, name, command, args, options) {
    return new Service(stack, name, 'ip', ['netns', 'exec', this.ns, command, ...args], options);
  }

  /** The status of an HTTP GET made from this host (0 when nothing answered). */
  httpStatus(url) {
    return httpStatusIn(this.ns, url);
  }

  /**
   * Chromium on this host. Playwright drives it over a pipe, so it only needs
   * the browser process started inside the namespace: a script does that.
   * @param {import('./harness.mjs').Stack} stack
   * @param {{args?: string[]}} [options] more command-line switches
   */
  async launchChromium(stack, { args = [] } = {}) {
    const script = path.join(stack.tempDir('chromium-in-netns'), 'chromium');
    writeFileSync(script, `#!/bin/sh\nexec ip netns exec ${this.ns} ${CHROMIUM} "$@"\n`);
    chmodSync(script, 0o755);
    return launchBrowser(stack, { executablePath: script, args });
  }

  /**
   * Firefox ESR on this host. puppeteer-core reaches Firefox over WebDriver BiDi,
   * a WebSocket that Firefox opens on the loopback of its own namespace: a port
   * here is forwarded to the same port number there, since Firefox refuses a
   * handshake whose Host header names another port than its own.
   * @param {import('./harness.mjs').Stack} stack
   * @param {{userDataDir?: string, prefs?: Record<string, unknown>}} [options] see launchFirefox
   */
  async launchFirefox(stack, { userDataDir, prefs } = {}) {
    const port = await forwardIntoNamespace(stack, this.ns);
    const script = path.join(stack.tempDir('firefox-in-netns'), 'firefox');
    writeFileSync(script, `#!/bin/sh\nexec ip netns exec ${this.ns} ${FIREFOX} "$@"\n`);
    chmodSync(script, 0o755);
    return launchFirefox(stack, { executablePath: script, userDataDir, prefs, debuggingPort: port });
  }
}

/** Namespaces, veths and NAT routers; everything it makes is undone by a Stack. */
export class Netlab {
  #stack;
  #prefix = `${TAG}${process.pid}-`;
  #count = 0;
  #ports = 0;
  /** The namespace of the public network's bridge, where the servers run. */
  server = null;

  /** @param {import('./harness.mjs').Stack} stack undoes what is not given a stack of its own */
  constructor(stack) {
    this.#stack = stack;
  }

  #namespace(name, stack = this.#stack) {
    const ns = `${this.#prefix}${name}`;
    run('ip', ['netns', 'add', ns]);
    stack.defer(() => removeNamespace(ns));
    // IPv4 only: no link-local IPv6 candidates that would cross the bridge directly.
    inNamespace(ns, 'sysctl', ['-q', '-w', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
    run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    return ns;
  }

  /** A veth pair `a` in `nsA`, `b` in `nsB`, both up. */
  #veth(nsA, a, nsB, b) {
    run('ip', ['-n', nsA, 'link', 'add', a, 'type', 'veth', 'peer', 'name', b, 'netns', nsB]);
    run('ip', ['-n', nsA, 'link', 'set', a, 'up']);
    run('ip', ['-n', nsB, 'link', 'set', b, 'up']);
  }

  #address(ns, dev, cidr) {
    run('ip', ['-n', ns, 'addr', 'add', cidr, 'dev', dev]);
  }

  /** Plugs interface `dev` of `ns` into the public bridge with address `cidr`. */
  #plugIntoPublic(ns, dev, cidr) {
    const port = `p${++this.#ports}`;
    this.#veth(ns, dev, this.server, port);
    run('ip', ['-n', this.server, 'link', 'set', port, 'master', 'br0']);
    this.#address(ns, dev, cidr);
  }

  /** /etc/hosts inside `ns` (`ip netns exec` mounts /etc/netns/<ns>/hosts over it). */
  #hostsFile(ns) {
    const dir = path.join('/etc/netns', ns);
    mkdirSync(dir, { recursive: true });
    // The machine's own name too: looking it up in DNS makes Firefox wait seconds to start.
    // TURN_HOST also as the absolute name (a trailing dot), which is what Chromium looks up.
    writeFileSync(
      path.join(dir, 'hosts'),
      `127.0.0.1 localhost\n::1 localhost\n127.0.1.1 ${os.hostname()}\n${SERVER_ADDRESS} ${TURN_HOST} ${TURN_HOST}.\n`,
    );
    // No DNS server: a query is refused at once rather than waiting for one out of reach.
    writeFileSync(path.join(dir, 'resolv.conf'), 'nameserver 127.0.0.1\n');
    for (const file of ['hosts', 'resolv.conf']) chmodSync(path.join(dir, file), 0o644);
  }

  /** The public network: a bridge in a namespace of its own, which holds SERVER_ADDRESS. */
  publicNetwork() {
    if (this.server) return this.server;
    const ns = this.#namespace('public');
    run('ip', ['-n', ns, 'link', 'add', 'br0', 'type', 'bridge']);
    run('ip', ['-n', ns, 'link', 'set', 'br0', 'up']);
    this.#address(ns, 'br0', `${SERVER_ADDRESS}/24`);
    // The rest of the Internet: a default route out of a veth whose other end drops
    // everything (a gateway address no one has, with a fixed MAC address so that no
    // neighbour lookup fails), where datagrams to addresses nobody has here (the
    // private ones of candidates) vanish as they would out there, instead of
    // failing the send: coturn counts "network unreachable" against a relay.
    this.#veth(ns, 'internet', ns, 'sink');
    run('ip', ['-n', ns, 'neigh', 'add', INTERNET_GATEWAY, 'lladdr', '02:00:00:00:00:01', 'dev', 'internet', 'nud', 'permanent']);
    run('ip', ['-n', ns, 'route', 'add', 'default', 'via', INTERNET_GATEWAY, 'dev', 'internet', 'onlink']);
    this.server = ns;
    this.#hostsFile(ns);
    return ns;
  }

  /** The server namespace as a Host, to run the node and coturn in. */
  serverHost() {
    const host = new Host(this.publicNetwork());
    host.address = SERVER_ADDRESS;
    host.label = 'public server';
    return host;
  }

  /**
   * A host, connected to nothing yet; its namespace lives as long as the Netlab's stack.
   * @param {string} name
   */
  host(name) {
    this.publicNetwork();
    const ns = this.#namespace(`${++this.#count}-${name}`);
    this.#hostsFile(ns);
    return new Host(ns);
  }

  /**
   * Connects `host` to the public network itself (`'public'`: nothing between it
   * and the servers), or to a private LAN (a /27 of 192.0.2.0/24) behind a NAT
   * router of its own whose WAN side is on the public network. A host connected
   * elsewhere is disconnected first. `stack` disconnects it again and removes
   * the router.
   * @param {Host} host
   * @param {'public' | NatKind} network
   * @param {import('./harness.mjs').Stack} stack
   */
  connect(host, network, stack) {
    this.disconnect(host);
    const n = ++this.#count;
    host.connection = n;
    // Unless it was connected elsewhere since.
    stack.defer(() => host.connection === n && this.disconnect(host));
    if (network === 'public') {
      const address = `${PUBLIC_PREFIX}.${100 + (n % 150)}`;
      this.#plugIntoPublic(host.ns, 'eth0', `${address}/24`);
      run('ip', ['-n', host.ns, 'route', 'add', 'default', 'via', SERVER_ADDRESS]);
      Object.assign(host, { address, label: 'public network', router: null });
      return host;
    }
    const { nat, blockUdp = false } = network;
    if (!['endpoint-independent', 'symmetric'].includes(nat)) throw new Error(`unknown NAT kind ${nat}`);
    const router = this.#namespace(`${n}-nat`, stack);
    const wan = `${PUBLIC_PREFIX}.${10 + (n % 80)}`;
    this.#plugIntoPublic(router, 'wan', `${wan}/24`);
    run('ip', ['-n', router, 'route', 'add', 'default', 'via', SERVER_ADDRESS]);
    const lan = 32 * (n % 8);
    const gateway = `${PRIVATE_PREFIX}.${lan + 1}`;
    const address = `${PRIVATE_PREFIX}.${lan + 10}`;
    this.#veth(router, 'lan', host.ns, 'eth0');
    this.#address(router, 'lan', `${gateway}/27`);
    this.#address(host.ns, 'eth0', `${address}/27`);
    run('ip', ['-n', host.ns, 'route', 'add', 'default', 'via', gateway]);
    inNamespace(router, 'sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1']);

    const rules = [
      ...(blockUdp ? [['-A', 'FORWARD', '-p', 'udp', '-j', 'DROP']] : []),
      // What the LAN asked for comes back; nothing else enters, neither the LAN nor the router.
      ['-A', 'FORWARD', '-m', 'conntrack', '--ctstate', 'ESTABLISHED,RELATED', '-j', 'ACCEPT'],
      ['-A', 'FORWARD', '-i', 'wan', '-j', 'DROP'],
      ['-A', 'FORWARD', '-i', 'lan', '-o', 'wan', '-j', 'ACCEPT'],
      ['-A', 'INPUT', '-i', 'wan', '-m', 'conntrack', '--ctstate', 'ESTABLISHED,RELATED', '-j', 'ACCEPT'],
      ['-A', 'INPUT', '-i', 'wan', '-j', 'DROP'],
      [
        '-t',
        'nat',
        '-A',
        'POSTROUTING',
        '-o',
        'wan',
        '-j',
        'MASQUERADE',
        ...(nat === 'symmetric' ? ['--random-fully'] : []),
      ],
    ];
    for (const rule of rules) inNamespace(router, 'iptables', rule);
    const label = `${nat} NAT${blockUdp ? ', UDP blocked' : ''}`;
    Object.assign(host, { address, label, router: { ns: router, wan, nat, blockUdp } });
    return host;
  }

  /** Unplugs `host` from whatever it is connected to (its router stays until its stack removes it). */
  disconnect(host) {
    run('ip', ['-n', host.ns, 'link', 'del', 'eth0'], { allowFailure: true });
    Object.assign(host, { address: null, label: 'not connected', router: null });
  }
}

/** The HTTP status of a GET from inside `ns` (0 when nothing answered), for readiness checks. */
export function httpStatusIn(ns, url) {
  return new Promise((resolve) => {
    const child = spawn('ip', ['netns', 'exec', ns, 'curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '1', url], {
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    let out = '';
    child.stdout.on('data', (chunk) => {
      out += chunk;
    });
    child.on('error', () => resolve(0));
    child.on('exit', () => resolve(Number(out) || 0));
  });
}

// Runs inside the namespace: joins its stdin and stdout to a TCP port on its loopback.
const CONNECTOR = `
const socket = require('node:net').connect(Number(process.argv[1]), '127.0.0.1');
process.stdin.pipe(socket);
socket.pipe(process.stdout);
socket.on('error', () => process.exit(1));
socket.on('close', () => process.exit(0));
`;

/**
 * A free port on this process's loopback that leads to the same port on the
 * loopback of namespace `ns` (free there too: nothing else runs in it yet), so
 * that a driver outside reaches a browser inside (Firefox's WebDriver BiDi listens
 * on 127.0.0.1 only). Each connection gets its own small connector process inside
 * the namespace, fed through its stdin and stdout.
 */
export async function forwardIntoNamespace(stack, ns) {
  let targetPort = 0;
  const children = new Set();
  const server = net.createServer((socket) => {
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', CONNECTOR, String(targetPort)], {
      stdio: ['pipe', 'pipe', 'ignore'],
    });
    children.add(child);
    socket.pipe(child.stdin);
    child.stdout.pipe(socket);
    child.stdin.on('error', () => socket.destroy());
    socket.on('error', () => child.kill('SIGKILL'));
    socket.on('close', () => child.kill('SIGKILL'));
    child.on('exit', () => {
      children.delete(child);
      socket.destroy();
    });
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  targetPort = server.address().port;
  stack.defer(
    () =>
      new Promise((resolve) => {
        for (const child of children) child.kill('SIGKILL');
        server.close(() => resolve());
      }),
  );
  return server.address().port;
}
