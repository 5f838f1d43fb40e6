// A bad link for the emulated networks: delay, jitter and loss on every packet
// that crosses one interface of a network namespace, both ways. The kernel these
// tests run on may have no netem qdisc, so iptables (mangle table) hands the
// packets to an NFQUEUE and link-shaper.py, running in the same namespace, holds
// each one for the delay plus jitter, or drops it, before letting it go on. The
// rules sit in the mangle table, so a packet the shaper lets go still meets the
// namespace's filter and NAT rules as before.
//
// link-shaper.py needs the NetfilterQueue pip package: it lives in a venv under
// target/ (SHAPER_VENV), which test.sh makes and which ensureShaper() makes when
// it is missing. Building it needs gcc, python3-dev, python3-venv and
// libnetfilter-queue-dev.

import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { REPO_ROOT, Service, waitFor } from './harness.mjs';

export const SHAPER_VENV = process.env.E2E_SHAPER_VENV ?? path.join(REPO_ROOT, 'target/netlab-venv');
const SHAPER_SCRIPT = fileURLToPath(new URL('./link-shaper.py', import.meta.url));
const SHAPER_PYTHON = path.join(SHAPER_VENV, 'bin/python');
/** The pip packages link-shaper.py uses (test.sh installs from the same file). */
const SHAPER_REQUIREMENTS = fileURLToPath(new URL('./link-shaper.requirements.txt', import.meta.url));

function hasNetfilterQueue() {
  if (!existsSync(SHAPER_PYTHON)) return false;
  return spawnSync(SHAPER_PYTHON, ['-c', 'import netfilterqueue'], { stdio: 'ignore' }).status === 0;
}

/**
 * Makes the venv with NetfilterQueue when it is missing; throws saying what to
 * install when that fails.
 */
export function ensureShaper() {
  if (hasNetfilterQueue()) return SHAPER_PYTHON;
  const python = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
  const steps = [
    [python, ['-m', 'venv', SHAPER_VENV]],
    [path.join(SHAPER_VENV, 'bin/pip'), ['install', '--quiet', '-r', SHAPER_REQUIREMENTS]],
  ];
  for (const [command, args] of steps) {
    const result = spawnSync(command, args, { encoding: 'utf8' });
    if (result.status !== 0) {
      throw new Error(
        `${command} ${args.join(' ')} failed (${result.stderr || result.error?.message}); ` +
          'the link shaper needs gcc, python3-dev, python3-venv and libnetfilter-queue-dev (./test.sh installs them)',
      );
    }
  }
  if (!hasNetfilterQueue()) throw new Error(`NetfilterQueue does not import in ${SHAPER_VENV}`);
  return SHAPER_PYTHON;
}

function iptables(ns, args) {
  const result = spawnSync('ip', ['netns', 'exec', ns, 'iptables', '-w', ...args], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`iptables ${args.join(' ')} in ${ns}: ${result.stderr || result.error}`);
}

let nextQueue = 0;

/**
 * A shaper on one interface of a namespace, until `stop()` or the Stack's cleanup.
 * `summary()` after `stop()` says what it did.
 */
export class LinkShaper {
  #ns;
  #rules;
  #service;
  #stopped = null;

  constructor(ns, rules, service) {
    this.#ns = ns;
    this.#rules = rules;
    this.#service = service;
  }

  /**
   * Removes the rules, then stops the shaper, which lets held packets go first.
   * @returns {Promise<{seen: number, dropped: number, accepted: number, meanDelayMs: number} | null>}
   */
  stop() {
    this.#stopped ??= (async () => {
      for (const rule of this.#rules) {
        try {
          iptables(this.#ns, ['-t', 'mangle', '-D', ...rule]);
        } catch {
          // The namespace may already be gone with everything in it.
        }
      }
      await this.#service.stop('SIGTERM');
      const lines = this.#service.logTail(5).trim().split('\n');
      try {
        return JSON.parse(lines.at(-1));
      } catch {
        return null;
      }
    })();
    return this.#stopped;
  }
}

/**
 * Delays (by `delayMs` ± `jitterMs`, uniform) and drops (a `loss` fraction of)
 * every packet crossing interface `dev` of namespace `ns`, each way. With
 * `forwarded` (the default) the packets are those the namespace routes through
 * `dev`, as on a router's LAN side; without, those it sends and receives itself.
 * @param {import('./harness.mjs').Stack} stack
 * @param {{ns: string, dev: string, delayMs: number, jitterMs?: number, loss?: number, seed?: number, forwarded?: boolean}} options
 */
export async function shapeLink(stack, { ns, dev, delayMs, jitterMs = 0, loss = 0, seed, forwarded = true }) {
  const python = ensureShaper();
  nextQueue += 1;
  const queue = String(100 + nextQueue);
  const args = [
    SHAPER_SCRIPT,
    '--queue',
    queue,
    '--delay-ms',
    String(delayMs),
    '--jitter-ms',
    String(jitterMs),
    '--loss',
    String(loss),
    ...(seed === undefined ? [] : ['--seed', String(seed)]),
  ];
  const service = new Service(stack, `shaper-${dev}-${queue}`, 'ip', ['netns', 'exec', ns, python, '-u', ...args], {
    stopSignal: 'SIGTERM',
  });
  await waitFor(
    () => {
      if (!service.alive) throw new Error(`link-shaper exited (${service.exitCode}):\n${service.logTail()}`);
      return service.logTail(5).includes(`ready queue=${queue}`);
    },
    { timeoutMs: 10_000, message: 'link-shaper to bind its queue' },
  );
  // Bound before the rules exist, so no packet waits for a shaper that is not there;
  // --queue-bypass lets packets through should it die.
  const target = ['-j', 'NFQUEUE', '--queue-num', queue, '--queue-bypass'];
  const rules = forwarded
    ? [
        ['FORWARD', '-i', dev, ...target],
        ['FORWARD', '-o', dev, ...target],
      ]
    : [
        ['PREROUTING', '-i', dev, ...target],
        ['OUTPUT', '-o', dev, ...target],
      ];
  const shaper = new LinkShaper(ns, rules, service);
  stack.defer(() => shaper.stop());
  for (const rule of rules) iptables(ns, ['-t', 'mangle', '-A', ...rule]);
  return shaper;
}

/**
 * Round trips of `count` pings from namespace `ns` to `address`, in milliseconds
 * (a lost ping is left out), from iputils ping's per-reply lines.
 */
export function pingRtts(ns, address, { count = 20, intervalS = 0.1 } = {}) {
  const result = spawnSync(
    'ip',
    ['netns', 'exec', ns, 'ping', '-n', '-c', String(count), '-i', String(intervalS), '-W', '2', address],
    { encoding: 'utf8' },
  );
  if (result.error) throw new Error(`ping: ${result.error.message} (apt-get install iputils-ping)`);
  return [...result.stdout.matchAll(/time=([\d.]+) ms/g)].map((match) => Number(match[1]));
}

/** Why a shaped link cannot be made here, or null when it can. */
export function shaperUnavailable() {
  if (process.getuid?.() !== 0) return 'needs root for network namespaces, iptables and NFQUEUE';
  for (const [tool, args] of [
    ['iptables', ['--version']],
    ['ping', ['-V']],
  ]) {
    const probe = spawnSync(tool, args, { stdio: 'ignore' });
    if (probe.error || probe.status !== 0) return `needs ${tool} (apt-get install iptables iputils-ping)`;
  }
  return null;
}
