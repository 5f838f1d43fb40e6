// Network changes under a host of the emulated networks (netlab.mjs): its link
// taken away and given back, and a second uplink (another NAT router, another
// public address) that the host moves to, with the old link either kept up but
// silent or taken down.
//
// Each uplink keeps its own address's traffic on itself (a source rule and a
// routing table per link), as a host does that keeps each link's connections on
// that link: a socket opened over a link that goes silent stays there and dies
// quietly, instead of being reset through the new link. That is the hard case for
// a page: nothing tells it that its socket is gone.
//
// The second uplink's LAN is in 203.0.113.0/24 and its router's public address is
// at the top of the public /24 (.250 and up), which netlab.mjs never hands out. Its
// namespace is named like netlab's (`vcnl<pid>-...`), so that a crashed run's
// leftovers are removed by netlab's removeLeftovers() too.

import { spawnSync } from 'node:child_process';

import { PUBLIC_PREFIX, SERVER_ADDRESS } from './netlab.mjs';

const SECOND_LAN_PREFIX = '203.0.113';

function run(command, args, { allowFailure = false } = {}) {
  const result = spawnSync(command, args, { encoding: 'utf8' });
  if (!allowFailure && (result.error || result.status !== 0)) {
    throw new Error(`${command} ${args.join(' ')}: ${result.stderr || result.error?.message || `status ${result.status}`}`);
  }
  return result.stdout ?? '';
}

const ip = (ns, ...args) => run('ip', ['-n', ns, ...args]);
const exec = (ns, command, ...args) => run('ip', ['netns', 'exec', ns, command, ...args]);

function removeNamespace(ns) {
  for (const pid of run('ip', ['netns', 'pids', ns], { allowFailure: true }).split('\n').filter(Boolean)) {
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
  run('ip', ['netns', 'del', ns], { allowFailure: true });
}

/** The gateway of the default route in `ns`, or null. */
function defaultGateway(ns) {
  return /default via (\S+)/.exec(ip(ns, 'route', 'show', 'default'))?.[1] ?? null;
}

/** One way out of a host: its interface, its address there, the router behind it. */
export class Uplink {
  #blackholed = false;

  /**
   * @param {{host: import('./netlab.mjs').Host, dev: string, address: string, prefixLength: number, gateway: string,
   *   router: string, wan: string, table: number}} options
   *   router: the router's namespace; wan: its public address; table: the routing table of this link's own traffic
   */
  constructor({ host, dev, address, prefixLength, gateway, router, wan, table }) {
    Object.assign(this, { host, dev, address, prefixLength, gateway, router, wan, table });
  }

  /** Keeps this link's own address on this link, whatever the default route. */
  pin() {
    ip(this.host.ns, 'rule', 'add', 'from', this.address, 'table', String(this.table));
    this.#pinRoute();
  }

  #pinRoute() {
    ip(this.host.ns, 'route', 'replace', 'default', 'via', this.gateway, 'dev', this.dev, 'table', String(this.table));
  }

  /** The router forwards nothing any more, either way; the link itself stays up. */
  blackhole() {
    if (this.#blackholed) return;
    for (const chain of ['FORWARD', 'INPUT']) exec(this.router, 'iptables', '-w', '-I', chain, '1', '-j', 'DROP');
    this.#blackholed = true;
  }

  unblackhole() {
    if (!this.#blackholed) return;
    for (const chain of ['FORWARD', 'INPUT']) exec(this.router, 'iptables', '-w', '-D', chain, '-j', 'DROP');
    this.#blackholed = false;
  }

  /**
   * Takes the host's interface down, and its address and routes with it, as a
   * host's network manager does when a link goes away.
   */
  down() {
    ip(this.host.ns, 'link', 'set', this.dev, 'down');
    ip(this.host.ns, 'addr', 'flush', 'dev', this.dev);
  }

  /**
   * Brings the interface up and gives it its address and routes, as a DHCP client
   * does once the link is there (the same lease: the same address).
   */
  up() {
    ip(this.host.ns, 'link', 'set', this.dev, 'up');
    ip(this.host.ns, 'addr', 'replace', `${this.address}/${this.prefixLength}`, 'dev', this.dev);
    this.#pinRoute();
  }

  /** Makes this link the host's default route. */
  makeDefault() {
    ip(this.host.ns, 'route', 'replace', 'default', 'via', this.gateway, 'dev', this.dev);
  }
}

/**
 * The link a netlab host behind a NAT came with (`eth0`), pinned to its address.
 * @param {import('./netlab.mjs').Host} host a host that `lab.connect` put behind a NAT router
 */
export function firstUplink(host) {
  if (!host.router) throw new Error('firstUplink needs a host behind a netlab NAT router');
  const prefixLength = Number(new RegExp(`inet ${host.address.replaceAll('.', '\\.')}/(\\d+)`).exec(ip(host.ns, 'addr', 'show', 'dev', 'eth0'))?.[1]);
  if (!prefixLength) throw new Error(`no address ${host.address} on eth0 of ${host.ns}`);
  const uplink = new Uplink({
    host,
    dev: 'eth0',
    address: host.address,
    prefixLength,
    gateway: defaultGateway(host.ns),
    router: host.router.ns,
    wan: host.router.wan,
    table: 100,
  });
  uplink.pin();
  return uplink;
}

let uplinks = 0;

/**
 * A second way out for a host: a router of its own (endpoint-independent NAT, the
 * same rules and routes as netlab's) between a new interface `eth1` of the host and the
 * public network. The interface is left down and without an address, as a
 * network not joined yet: `move()` (or `up()` and `makeDefault()`) puts the host on it.
 * @param {import('./harness.mjs').Stack} stack
 * @param {import('./netlab.mjs').Netlab} lab
 * @param {import('./netlab.mjs').Host} host
 */
export function addUplink(stack, lab, host) {
  const n = ++uplinks;
  if (n > 4) throw new Error('at most four second uplinks per run');
  const router = `vcnl${process.pid}-up${n}`;
  run('ip', ['netns', 'add', router]);
  stack.defer(() => removeNamespace(router));
  exec(router, 'sysctl', '-q', '-w', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1');
  ip(router, 'link', 'set', 'lo', 'up');

  // WAN side: a port of the public bridge.
  const wan = `${PUBLIC_PREFIX}.${249 + n}`;
  const port = `u${n}`;
  ip(router, 'link', 'add', 'wan', 'type', 'veth', 'peer', 'name', port, 'netns', lab.server);
  ip(lab.server, 'link', 'set', port, 'master', 'br0');
  ip(lab.server, 'link', 'set', port, 'up');
  ip(router, 'link', 'set', 'wan', 'up');
  ip(router, 'addr', 'add', `${wan}/24`, 'dev', 'wan');
  // As netlab's routers: what is for nobody here goes to the public network's sink.
  ip(router, 'route', 'add', 'default', 'via', SERVER_ADDRESS);

  // LAN side: eth1 of the host.
  const gateway = `${SECOND_LAN_PREFIX}.${32 * (n - 1) + 1}`;
  const address = `${SECOND_LAN_PREFIX}.${32 * (n - 1) + 10}`;
  ip(router, 'link', 'add', 'lan', 'type', 'veth', 'peer', 'name', 'eth1', 'netns', host.ns);
  ip(router, 'link', 'set', 'lan', 'up');
  ip(router, 'addr', 'add', `${gateway}/27`, 'dev', 'lan');
  exec(router, 'sysctl', '-q', '-w', 'net.ipv4.ip_forward=1');
  for (const rule of [
    ['-A', 'FORWARD', '-m', 'conntrack', '--ctstate', 'ESTABLISHED,RELATED', '-j', 'ACCEPT'],
    ['-A', 'FORWARD', '-i', 'wan', '-j', 'DROP'],
    ['-A', 'FORWARD', '-i', 'lan', '-o', 'wan', '-j', 'ACCEPT'],
    ['-A', 'INPUT', '-i', 'wan', '-m', 'conntrack', '--ctstate', 'ESTABLISHED,RELATED', '-j', 'ACCEPT'],
    ['-A', 'INPUT', '-i', 'wan', '-j', 'DROP'],
    ['-t', 'nat', '-A', 'POSTROUTING', '-o', 'wan', '-j', 'MASQUERADE'],
  ]) {
    exec(router, 'iptables', '-w', ...rule);
  }
  const uplink = new Uplink({ host, dev: 'eth1', address, prefixLength: 27, gateway, router, wan, table: 100 + n });
  ip(host.ns, 'rule', 'add', 'from', address, 'table', String(uplink.table));
  return uplink;
}

/**
 * Moves `host` from uplink `from` to uplink `to`, as a laptop does when it joins
 * another network: `to` comes up and takes the default route. `oldLink`:
 * `blackholed` keeps `from` up and addressed while its router forwards nothing
 * any more (a Wi-Fi whose upstream died); `down` takes `from` down.
 */
export function move(from, to, { oldLink }) {
  if (!['blackholed', 'down'].includes(oldLink)) throw new Error(`unknown oldLink ${oldLink}`);
  to.unblackhole();
  to.up();
  if (oldLink === 'blackholed') from.blackhole();
  else from.down();
  to.makeDefault();
}

/** `needs turnserver` when coturn (the STUN server of these tests) is not installed, else null. */
export function coturnMissing() {
  return spawnSync('sh', ['-c', 'command -v turnserver'], { stdio: 'ignore' }).status === 0 ? null : 'needs turnserver (coturn)';
}

/** What an HTTP GET from inside `ns` returns (curl), or null when nothing answered. */
export function fetchTextIn(ns, url) {
  const result = spawnSync('ip', ['netns', 'exec', ns, 'curl', '-s', '--max-time', '3', url], { encoding: 'utf8' });
  return result.status === 0 ? result.stdout : null;
}
