// Everything the browser tests start: signaling nodes and Redis (through the
// vc-fleet launcher, services/fleet), nginx, coturn, Chromium and Firefox ESR,
// each on a free loopback port (or inside an emulated network's namespace, see
// netlab.mjs), each stopped by the test's `after` hook even when the test failed. Plus helpers that read media statistics from
// the pages, since "an element exists" proves nothing about a call.

import { spawn, spawnSync } from 'node:child_process';
import readline from 'node:readline';
import https from 'node:https';
import { existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';
import puppeteer from 'puppeteer-core';

export const REPO_ROOT = path.resolve(fileURLToPath(new URL('../../..', import.meta.url)));
const NODE_BIN = process.env.E2E_NODE_BIN ?? path.join(REPO_ROOT, 'target/debug/vc-signaling');
const FLEET_BIN = process.env.E2E_FLEET_BIN ?? path.join(REPO_ROOT, 'target/debug/vc-fleet');
const NGINX = process.env.E2E_NGINX ?? '/usr/sbin/nginx';
/** The browsers the tests start. */
export const CHROMIUM = process.env.E2E_CHROMIUM ?? '/usr/bin/chromium';
export const FIREFOX = process.env.E2E_FIREFOX ?? '/usr/bin/firefox-esr';

/** Polls `check` until it returns a truthy value; fails with `message` and the last value. */
export async function waitFor(check, { timeoutMs = 15_000, intervalMs = 100, message = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await check();
    if (last) return last;
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${message}; last: ${JSON.stringify(last)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Things to undo when a test file ends, undone in reverse order. */
export class Stack {
  #undo = [];
  #dirs = [];
  #cleaning = false;

  defer(fn) {
    // Something that finished starting after cleanup began (a hook failed half-way)
    // is undone at once rather than left running.
    if (this.#cleaning) {
      Promise.resolve()
        .then(fn)
        .catch((err) => console.error('cleanup:', err));
      return;
    }
    this.#undo.push(fn);
  }

  tempDir(prefix) {
    const dir = mkdtempSync(path.join(os.tmpdir(), `vc-e2e-${prefix}-`));
    this.#dirs.push(dir);
    return dir;
  }

  async cleanup() {
    this.#cleaning = true;
    while (this.#undo.length) {
      const fn = this.#undo.pop();
      try {
        await fn();
      } catch (err) {
        console.error('cleanup:', err);
      }
    }
    if (!process.env.E2E_KEEP_LOGS) {
      for (const dir of this.#dirs) rmSync(dir, { recursive: true, force: true });
    }
  }
}

/** A child process whose output goes to a log file, killed at cleanup if still alive. */
export class Service {
  /**
   * @param {object} [options]
   * @param {Record<string, string>} [options.env] added to (or, with `ownEnv`, replacing) this process's environment
   * @param {string} [options.stopSignal] what cleanup sends first; nginx needs SIGTERM to take its workers along
   */
  constructor(stack, name, command, args, { env = {}, ownEnv = false, cwd, dir, stopSignal = 'SIGKILL' } = {}) {
    this.name = name;
    this.logPath = path.join(dir ?? stack.tempDir(name), `${name}.log`);
    const log = openSync(this.logPath, 'a');
    this.child = spawn(command, args, {
      cwd,
      env: ownEnv ? env : { ...process.env, ...env },
      stdio: ['ignore', log, log],
    });
    this.exitCode = null;
    this.exited = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        this.exitCode = code ?? signal;
        resolve(this.exitCode);
      });
      this.child.on('error', (err) => {
        this.exitCode = err.message;
        resolve(err.message);
      });
    });
    stack.defer(() => this.stop(stopSignal));
  }

  get alive() {
    return this.exitCode === null;
  }

  get pid() {
    return this.child.pid;
  }

  /** The last lines it wrote, for failure messages. */
  logTail(lines = 30) {
    try {
      return readFileSync(this.logPath, 'utf8').split('\n').slice(-lines).join('\n');
    } catch {
      return '';
    }
  }

  kill(signal) {
    if (this.alive) this.child.kill(signal);
  }

  /** Sends `signal` and waits for the exit; SIGKILL after `graceMs`. */
  async stop(signal = 'SIGTERM', graceMs = 5000) {
    if (!this.alive) return this.exitCode;
    this.child.kill(signal);
    const timer = setTimeout(() => this.kill('SIGKILL'), graceMs);
    const code = await this.exited;
    clearTimeout(timer);
    return code;
  }
}

/** Status of an HTTPS GET that trusts any certificate: for readiness only. */
function httpsStatus(url) {
  return new Promise((resolve) => {
    const request = https.get(url, { rejectUnauthorized: false, timeout: 1000 }, (response) => {
      response.resume();
      response.on('end', () => resolve(response.statusCode));
    });
    request.on('timeout', () => request.destroy());
    request.on('error', () => resolve(0));
  });
}

async function waitUntilListening(port, service, timeoutMs = 10_000) {
  await waitFor(
    async () => {
      if (!service.alive) throw new Error(`${service.name} exited (${service.exitCode}):\n${service.logTail()}`);
      return new Promise((resolve) => {
        const socket = net.connect(port, '127.0.0.1', () => {
          socket.destroy();
          resolve(true);
        });
        socket.on('error', () => resolve(false));
      });
    },
    { timeoutMs, message: `${service.name} to listen on ${port}` },
  );
}

let binaryChecked = false;

/** Builds the node and the fleet launcher once if a binary is missing (a fresh checkout). */
export function ensureNodeBinary() {
  if (binaryChecked) return NODE_BIN;
  for (const [variable, binary] of [
    ['E2E_NODE_BIN', NODE_BIN],
    ['E2E_FLEET_BIN', FLEET_BIN],
  ]) {
    if (process.env[variable] && !existsSync(binary)) throw new Error(`${variable} points at ${binary}, which does not exist`);
  }
  if (!existsSync(NODE_BIN) || !existsSync(FLEET_BIN)) {
    const build = spawnSync('cargo', ['build', '-p', 'vc-signaling', '-p', 'vc-fleet'], { cwd: REPO_ROOT, stdio: 'inherit' });
    if (build.status !== 0) throw new Error('cargo build -p vc-signaling -p vc-fleet failed');
  }
  binaryChecked = true;
  return NODE_BIN;
}

/**
 * One vc-fleet process: it prints what it started as a JSON line, answers each
 * command line on its stdin with a JSON line, reports node exits as events,
 * and stops everything when its stdin closes (at cleanup, or when this
 * process dies).
 */
class FleetProcess {
  constructor(stack, name, args) {
    this.name = name;
    this.dir = stack.tempDir(name);
    this.logPath = path.join(this.dir, 'fleet.log');
    this.child = spawn(FLEET_BIN, ['--log-dir', this.dir, '--node-bin', NODE_BIN, ...args], {
      cwd: REPO_ROOT,
      stdio: ['pipe', 'pipe', openSync(this.logPath, 'a')],
    });
    this.nodeExits = new Map();
    this.answers = [];
    this.exited = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => resolve(code ?? signal));
      this.child.on('error', (err) => resolve(err.message));
    });
    this.started = new Promise((resolve, reject) => {
      const lines = readline.createInterface({ input: this.child.stdout });
      lines.once('line', (line) => {
        const description = JSON.parse(line);
        if (description.error) reject(new Error(`${name}: ${description.error}`));
        else resolve(description);
        lines.on('line', (next) => this.#receive(JSON.parse(next)));
      });
      this.exited.then((code) => reject(new Error(`${name}: vc-fleet exited (${code}):\n${readTail(this.logPath)}`)));
    });
    // Whatever ends the fleet ends its nodes.
    this.exited.then((code) => {
      for (const done of this.nodeExits.values()) done(`fleet exited (${code})`);
    });
    stack.defer(() => this.stop());
  }

  #receive(message) {
    if (message.event === 'exited') this.nodeExits.get(message.node)?.(message.status);
    else if ('command' in message) this.answers.shift()?.(message);
  }

  /** Sends one command line; resolves with its answer, rejects when it is not ok. */
  command(line) {
    return new Promise((resolve, reject) => {
      this.answers.push((answer) => (answer.ok ? resolve(answer) : reject(new Error(`${line}: ${answer.error}`))));
      this.child.stdin.write(`${line}\n`);
    });
  }

  /** Closes stdin: the fleet stops what it started and exits; SIGKILL after `graceMs`. */
  async stop(graceMs = 10_000) {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.stdin.end();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
  }
}

function readTail(file, lines = 30) {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

/** A node of a fleet, with the part of Service's interface the tests use. */
class FleetNode {
  constructor(fleet, id, pid) {
    this.fleet = fleet;
    this.name = `node-${id}`;
    this.id = id;
    this.pid = pid;
    this.logPath = path.join(fleet.dir, `${id}.log`);
    this.exitCode = null;
    this.exited = new Promise((resolve) => {
      fleet.nodeExits.set(id, (status) => {
        this.exitCode ??= status;
        resolve(this.exitCode);
      });
    });
  }

  get alive() {
    return this.exitCode === null;
  }

  logTail(lines = 30) {
    return readTail(this.logPath, lines);
  }

  /** SIGKILL, or SIGTERM for a drain; resolves once the fleet has done it. */
  async kill(signal = 'SIGKILL') {
    if (!this.alive) return;
    if (signal === 'SIGTERM') {
      await this.fleet.command(`term ${this.id}`);
    } else if (signal === 'SIGKILL') {
      const { status } = await this.fleet.command(`kill ${this.id}`);
      this.fleet.nodeExits.get(this.id)?.(status ?? 'SIGKILL');
    } else {
      throw new Error(`a fleet node takes SIGTERM or SIGKILL, not ${signal}`);
    }
  }

  /** Sends `signal` and waits for the exit; SIGKILL after `graceMs`. */
  async stop(signal = 'SIGTERM', graceMs = 5000) {
    if (!this.alive) return this.exitCode;
    await this.kill(signal);
    const timer = setTimeout(() => this.kill('SIGKILL').catch(() => {}), graceMs);
    const code = await this.exited;
    clearTimeout(timer);
    return code;
  }
}

/** A redis-server with no persistence; `port` to start one again where the nodes expect it, empty. */
export async function startRedis(stack, { port } = {}) {
  ensureNodeBinary();
  const fixed = port === undefined ? [] : ['--redis-port', String(port)];
  const fleet = new FleetProcess(stack, 'redis', ['--redis', 'standalone', '--nodes', '0', ...fixed]);
  const { redis } = await fleet.started;
  return { port: redis.ports[0], url: redis.url, service: fleet };
}

/**
 * A signaling node, ready (GET /readyz is 200).
 * @param {Stack} stack
 * @param {{id: string, redisUrl?: string, port?: number, env?: Record<string, string>, args?: string[], https?: boolean,
 *   host?: {ns: string, address: string, spawn: Function}}} options
 *   port: to start a node again where the pages expect it; args: the command line
 *   (`serve --lan`); https: the node speaks TLS (readiness is checked over HTTPS);
 *   host: a netlab.mjs Host to run in, listening on its address (then `port` is required)
 */
export async function startNode(stack, options) {
  ensureNodeBinary();
  const settings = {
    VC_RESUME__WINDOW: '10s',
    VC_TELEMETRY__LOG_LEVEL: 'warn',
    ...(options.redisUrl ? { VC_REDIS__URL: options.redisUrl } : {}),
    ...(options.env ?? {}),
  };
  return options.host ? startNodeInNamespace(stack, options, settings) : startFleetNode(stack, options, settings);
}

/** A node on loopback: a fleet of one, its own Redis or none. */
async function startFleetNode(stack, { id, port: fixedPort, args = [], https: tls = false }, settings) {
  const fleet = new FleetProcess(stack, `node-${id}`, [
    '--redis',
    'none',
    '--ids',
    id,
    ...(fixedPort === undefined ? [] : ['--node-ports', String(fixedPort)]),
    ...Object.entries(settings).flatMap(([key, value]) => ['--set', `${key}=${value}`]),
    // A node speaking TLS is checked over HTTPS below.
    '--ready',
    tls ? 'tcp' : 'http',
    '--ready-timeout',
    '20',
    '--',
    ...args,
  ]);
  let description;
  try {
    description = await fleet.started;
  } catch (err) {
    throw new Error(`${err.message}\n${readTail(path.join(fleet.dir, `${id}.log`))}`);
  }
  const { port, pid } = description.nodes[0];
  const service = new FleetNode(fleet, id, pid);
  const url = `${tls ? 'https' : 'http'}://127.0.0.1:${port}`;
  if (tls) {
    await waitFor(
      async () => {
        if (!service.alive) throw new Error(`node ${id} exited (${service.exitCode}):\n${service.logTail()}`);
        return (await httpsStatus(`${url}/readyz`)) === 200;
      },
      { timeoutMs: 20_000, message: `node ${id} to be ready` },
    );
  }
  return { id, port, url, service };
}

/**
 * A node inside a netlab.mjs namespace, started by the host itself: only the
 * host can run a program in its namespace and reach its address, so the
 * launcher, which checks readiness from here, cannot start it.
 */
async function startNodeInNamespace(stack, { id, port, args = [], https: tls = false, host }, settings) {
  if (port === undefined || tls) throw new Error('a node in a namespace needs a fixed port, and speaks HTTP');
  // The node reads every VC_* variable as a setting and refuses unknown ones:
  // only the settings given here reach it, whatever the caller's environment.
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('VC_')));
  const service = host.spawn(stack, `node-${id}`, NODE_BIN, args, {
    cwd: REPO_ROOT,
    ownEnv: true,
    env: {
      ...inherited,
      VC_SERVER__HOST: host.address,
      VC_SERVER__PORT: String(port),
      VC_NODE__ID: id,
      ...settings,
    },
  });
  const url = `http://${host.address}:${port}`;
  await waitFor(
    async () => {
      if (!service.alive) throw new Error(`node ${id} exited (${service.exitCode}):\n${service.logTail()}`);
      return (await host.httpStatus(`${url}/readyz`)) === 200;
    },
    { timeoutMs: 20_000, message: `node ${id} to be ready` },
  );
  return { id, port, url, service };
}

/** A counter or histogram count from a node's /metrics, summed over matching series. */
export async function metricValue(nodeUrl, name, labels = {}) {
  const text = await (await fetch(`${nodeUrl}/metrics`)).text();
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const matches = Object.entries(labels).every(([key, value]) => line.includes(`${key}="${value}"`));
    if (matches) total += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return total;
}

/** nginx balancing WebSockets and pages over `nodes`, as a load balancer would. */
export async function startNginx(stack, nodes) {
  const port = await freePort();
  const dir = stack.tempDir('nginx');
  const upstreams = nodes.map((node) => `    server 127.0.0.1:${node.port} max_fails=1 fail_timeout=30s;`).join('\n');
  const conf = `
worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  upstream nodes {
${upstreams}
  }
  map $http_upgrade $connection_upgrade {
    default upgrade;
    '' close;
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://nodes;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header Host $host;
      proxy_connect_timeout 2s;
      proxy_read_timeout 1h;
      proxy_send_timeout 1h;
      proxy_next_upstream error timeout http_502 http_503;
    }
  }
}
`;
  const confPath = path.join(dir, 'nginx.conf');
  writeFileSync(confPath, conf);
  const service = new Service(stack, 'nginx', NGINX, ['-p', dir, '-c', confPath, '-e', path.join(dir, 'error.log')], {
    dir,
    stopSignal: 'SIGTERM',
  });
  await waitUntilListening(port, service);
  return { port, url: `http://127.0.0.1:${port}`, service };
}

/**
 * coturn with TURN REST credentials (`use-auth-secret`), relaying on loopback only,
 * or, given a netlab.mjs `host`, on that host's address: UDP and TCP on 3478, and
 * TLS on 5349 when `tls` names a certificate and key.
 * @param {Stack} stack
 * @param {{secret: string, realm?: string, host?: import('./netlab.mjs').Host, tls?: {certFile: string, keyFile: string}}} options
 */
export async function startTurn(stack, { secret, realm = 'video-caller.test', host, tls }) {
  const port = host ? 3478 : await freePort();
  const tlsPort = 5349;
  const address = host?.address ?? '127.0.0.1';
  const dir = stack.tempDir('turn');
  const relayBase = 40000 + Math.floor(Math.random() * 200) * 100;
  const args = [
    '-n',
    `--listening-ip=${address}`,
    `--listening-port=${port}`,
    `--relay-ip=${address}`,
    `--min-port=${relayBase}`,
    `--max-port=${relayBase + 99}`,
    '--use-auth-secret',
    `--static-auth-secret=${secret}`,
    `--realm=${realm}`,
    // On loopback, both browsers' relay addresses are too; coturn refuses such peers unless told.
    ...(host ? [] : ['--allow-loopback-peers']),
    '--no-cli',
    ...(tls ? [`--tls-listening-port=${tlsPort}`, `--cert=${tls.certFile}`, `--pkey=${tls.keyFile}`] : ['--no-tls']),
    '--no-dtls',
    '--no-tcp-relay',
    '--fingerprint',
    `--db=${path.join(dir, 'turndb')}`,
    `--pidfile=${path.join(dir, 'turn.pid')}`,
    `--log-file=${path.join(dir, 'turn-server.log')}`,
    '--simple-log',
    '--no-stdout-log',
  ];
  const service = host
    ? host.spawn(stack, 'turn', 'turnserver', args, { dir })
    : new Service(stack, 'turn', 'turnserver', args, { dir });
  // Readiness is "it is still running and logged its relay set-up": on loopback it answers on UDP only.
  await waitFor(
    () => {
      if (!service.alive) throw new Error(`turnserver exited (${service.exitCode})`);
      try {
        return readFileSync(path.join(dir, 'turn-server.log'), 'utf8').includes('Relay ports initialization done');
      } catch {
        return false;
      }
    },
    { timeoutMs: 10_000, message: 'turnserver to start' },
  );
  return {
    port,
    tlsPort: tls ? tlsPort : null,
    url: `turn:${address}:${port}?transport=udp`,
    service,
    logPath: path.join(dir, 'turn-server.log'),
  };
}

/**
 * Chromium with a fake camera and microphone.
 * @param {{fakeUi?: boolean, args?: string[], executablePath?: string}} [options] fakeUi: grant camera, microphone and screen
 *   capture without prompts (without it, media requests are denied unless the
 *   context was given the permissions); args: more command-line switches;
 *   executablePath: what to start instead of Chromium (a script that starts it
 *   in a network namespace, say)
 */
export async function launchBrowser(stack, { fakeUi = true, args = [], executablePath = CHROMIUM } = {}) {
  const browser = await chromium.launch({
    executablePath,
    args: [
      // Several cameras and microphones, so that switching devices can be tested.
      '--use-fake-device-for-media-stream=device-count=3',
      ...(fakeUi ? ['--use-fake-ui-for-media-stream'] : []),
      '--allow-loopback-in-peer-connection',
      ...args,
      // Playwright adds the rest that matters here: no background throttling of
      // the pages that are not in front, no background networking, headless.
    ],
  });
  stack.defer(() => browser.close());
  return browser;
}

/** A person in a browser context of their own. */
export class Caller {
  constructor(context, page, name) {
    this.context = context;
    this.page = page;
    this.name = name;
    this.errors = [];
    page.on('pageerror', (err) => this.errors.push(err.message));
  }

  /**
   * Opens `url` (a room link), types the name and presses Join; resolves when the
   * call screen is up. Returns the time of the click.
   */
  async join() {
    await fillInput(this.page, '#display-name', this.name);
    // Generous: three pages with camera previews on two busy cores have taken
    // over 20 s to get from the click to the call screen.
    await waitFor(() => this.page.evaluate(() => Boolean(window.__vc?.media?.audioTrack || window.__vc?.media?.problems?.audio)), {
      timeoutMs: 45_000,
      message: `${this.name}'s microphone, or the reason there is none`,
    });
    const clickedAt = Date.now();
    await this.page.click('#join-button');
    await this.page.waitForSelector('.call', { timeout: 45_000 });
    this.joinedAt = clickedAt;
    return clickedAt;
  }

  state() {
    return this.page.evaluate(() => window.__vc.state());
  }

  /** Per remote peer: what getStats() says arrives from them. */
  mediaStats() {
    return this.page.evaluate(readMediaStats);
  }

  async close() {
    await this.context.close();
  }
}

// Runs in the page: one entry per peer connection.
async function readMediaStats() {
  const result = [];
  for (const { peerId, name, pc } of window.__vc.peerConnections()) {
    const report = await pc.getStats();
    const entry = {
      peerId,
      name,
      connectionState: pc.connectionState,
      framesDecoded: 0,
      frameWidth: 0,
      frameHeight: 0,
      audioPacketsReceived: 0,
      localCandidateType: null,
      remoteCandidateType: null,
      // How the local relay candidate reaches its TURN server (udp, tcp, tls), when it is one.
      localRelayProtocol: null,
      sendingVideoLabel: pc.getSenders().find((sender) => sender.track?.kind === 'video')?.track.label ?? null,
      sendingAudioLabel: pc.getSenders().find((sender) => sender.track?.kind === 'audio')?.track.label ?? null,
    };
    let pairId = null;
    report.forEach((stat) => {
      if (stat.type === 'transport' && stat.selectedCandidatePairId) pairId = stat.selectedCandidatePairId;
    });
    // Firefox marks the selected pair itself rather than in a transport entry.
    report.forEach((stat) => {
      if (!pairId && stat.type === 'candidate-pair' && stat.selected) pairId = stat.id;
    });
    report.forEach((stat) => {
      if (stat.type === 'inbound-rtp' && stat.kind === 'video' && (stat.framesDecoded ?? 0) >= entry.framesDecoded) {
        entry.framesDecoded = stat.framesDecoded ?? 0;
        entry.frameWidth = stat.frameWidth ?? 0;
        entry.frameHeight = stat.frameHeight ?? 0;
      }
      if (stat.type === 'inbound-rtp' && stat.kind === 'audio') {
        entry.audioPacketsReceived += stat.packetsReceived ?? 0;
      }
    });
    const pair = pairId ? report.get(pairId) : null;
    if (pair) {
      const local = report.get(pair.localCandidateId);
      entry.localCandidateType = local?.candidateType ?? null;
      entry.remoteCandidateType = report.get(pair.remoteCandidateId)?.candidateType ?? null;
      if (local?.candidateType === 'relay') entry.localRelayProtocol = local.relayProtocol ?? null;
    }
    result.push(entry);
  }
  return result;
}

/**
 * Firefox ESR with a fake camera and microphone, driven by puppeteer-core over
 * WebDriver BiDi (Playwright only drives its own patched Firefox builds).
 * @param {{executablePath?: string, userDataDir?: string, debuggingPort?: number, prefs?: Record<string, unknown>}} [options]
 *   userDataDir: a profile prepared beforehand (its certificate database, say);
 *   debuggingPort: where WebDriver BiDi listens (default: any free port);
 *   prefs: more preferences
 */
export async function launchFirefox(stack, { executablePath = FIREFOX, userDataDir, debuggingPort, prefs = {} } = {}) {
  const browser = await puppeteer.launch({
    browser: 'firefox',
    executablePath,
    headless: true,
    ...(userDataDir ? { userDataDir } : {}),
    ...(debuggingPort ? { debuggingPort } : {}),
    protocolTimeout: 60_000,
    extraPrefsFirefox: {
      'media.navigator.streams.fake': true,
      'media.navigator.permission.disabled': true,
      'media.peerconnection.ice.loopback': true,
      'media.peerconnection.ice.obfuscate_host_addresses': false,
      ...prefs,
    },
  });
  const process = browser.process();
  stack.defer(async () => {
    // A Firefox that does not quit would hold the test run open.
    const closed = browser.close().catch(() => {});
    const timer = new Promise((resolve) => setTimeout(resolve, 5000));
    await Promise.race([closed, timer]);
    if (process && process.exitCode === null && process.signalCode === null) process.kill('SIGKILL');
  });
  browser.isFirefox = true;
  return browser;
}

/** Sets an input's value the way typing does, in either driver. */
async function fillInput(page, selector, value) {
  if (typeof page.fill === 'function') {
    await page.fill(selector, value);
  } else {
    await page.locator(selector).fill(value);
  }
}

/**
 * Opens a page for `name` at `url` in a new context (a Chromium context or a
 * Firefox browser context; both give each person their own storage).
 * @param {import('playwright-core').Browser} browser
 */
export async function openCaller(browser, url, name, { viewport = { width: 1280, height: 720 }, permissions } = {}) {
  if (browser.isFirefox) {
    const context = await browser.createBrowserContext();
    const page = await context.newPage();
    await page.setViewport(viewport);
    await page.goto(url);
    return new Caller(context, page, name);
  }
  const context = await browser.newContext({ viewport, ...(permissions ? { permissions } : {}) });
  const page = await context.newPage();
  await page.goto(url);
  return new Caller(context, page, name);
}

/**
 * Waits until `caller` decodes video and receives audio from each of `peerCount`
 * peers, and the frame counts are still rising on a second look: a frozen call
 * is not a call.
 */
export async function waitForMediaFromAll(caller, peerCount, { timeoutMs = 20_000 } = {}) {
  const first = await waitFor(
    async () => {
      const stats = await caller.mediaStats();
      const flowing = stats.filter((s) => s.framesDecoded > 0 && s.audioPacketsReceived > 0);
      return stats.length === peerCount && flowing.length === peerCount ? stats : false;
    },
    { timeoutMs, intervalMs: 50, message: `${caller.name} to decode video and receive audio from ${peerCount} peers` },
  );
  const firstMediaAt = Date.now();
  await assertMediaKeepsFlowing(caller, first);
  return { stats: first, firstMediaAt };
}

/** Fails unless every peer's decoded frames and audio packets rise beyond `before`. */
export async function assertMediaKeepsFlowing(caller, before, { timeoutMs = 10_000 } = {}) {
  return waitFor(
    async () => {
      const now = await caller.mediaStats();
      const rising = before.every((old) => {
        const current = now.find((s) => s.peerId === old.peerId);
        return current && current.framesDecoded > old.framesDecoded + 5 && current.audioPacketsReceived > old.audioPacketsReceived + 5;
      });
      return rising ? now : false;
    },
    { timeoutMs, intervalMs: 200, message: `${caller.name}'s media to keep flowing` },
  );
}

/** A fresh room name per test, so that tests never see each other's seats. */
export function roomName(prefix) {
  return `${prefix}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
}

const AXE_SOURCE = readFileSync(path.join(REPO_ROOT, 'web-client/node_modules/axe-core/axe.min.js'), 'utf8');

/**
 * axe-core's findings on the page as it is now, by impact; `serious` and
 * `critical` ones are those a screen-reader or keyboard user cannot get past.
 * @returns {Promise<{id: string, impact: string, help: string, targets: string[]}[]>}
 */
export async function accessibilityViolations(page) {
  await page.evaluate(AXE_SOURCE);
  return page.evaluate(async () => {
    const results = await window.axe.run(document, { resultTypes: ['violations'] });
    return results.violations.map((violation) => ({
      id: violation.id,
      impact: violation.impact,
      help: violation.help,
      targets: violation.nodes.map((node) => node.target.join(' ')),
    }));
  });
}

/** Only the violations that block people: `serious` and `critical`. */
export function blocking(violations) {
  return violations.filter((violation) => violation.impact === 'serious' || violation.impact === 'critical');
}

/**
 * A relay between pages and a node that forwards everything, pages and
 * WebSockets alike, but rewrites the DTLS fingerprint in every SDP the pages
 * send: what a signaling service sitting in the middle of a call would do.
 * @returns {Promise<{url: string, rewritten: () => number}>}
 */
export async function startTamperingRelay(stack, nodeUrl) {
  const { WebSocketServer, WebSocket } = await import('ws');
  const http = await import('node:http');
  const target = new URL(nodeUrl);
  let rewritten = 0;
  const tamper = (text) => {
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      return text;
    }
    if ((message.type !== 'offer' && message.type !== 'answer') || typeof message.sdp !== 'string') return text;
    // Another certificate's fingerprint: same format, first byte changed.
    message.sdp = message.sdp.replace(/(a=fingerprint:\S+ )([0-9A-F]{2})/gi, (_, head, byte) => {
      rewritten += 1;
      return head + ((parseInt(byte, 16) ^ 0xff).toString(16).toUpperCase().padStart(2, '0'));
    });
    return JSON.stringify(message);
  };

  const server = http.createServer((request, response) => {
    const upstream = http.request(
      { host: target.hostname, port: target.port, path: request.url, method: request.method, headers: request.headers },
      (reply) => {
        response.writeHead(reply.statusCode, reply.headers);
        reply.pipe(response);
      },
    );
    upstream.on('error', () => response.destroy());
    request.pipe(upstream);
  });
  const sockets = new WebSocketServer({ noServer: true });
  server.on('upgrade', (request, socket, head) => {
    sockets.handleUpgrade(request, socket, head, (page) => {
      const upstream = new WebSocket(`ws://${target.host}${request.url}`);
      const held = [];
      page.on('message', (data, isBinary) => {
        const forwarded = isBinary ? data : tamper(data.toString());
        if (upstream.readyState === WebSocket.OPEN) upstream.send(forwarded);
        else held.push(forwarded);
      });
      upstream.on('open', () => held.splice(0).forEach((message) => upstream.send(message)));
      upstream.on('message', (data, isBinary) => page.send(isBinary ? data : data.toString()));
      const closeBoth = () => {
        page.terminate();
        upstream.terminate();
      };
      page.on('close', closeBoth);
      upstream.on('close', closeBoth);
      page.on('error', closeBoth);
      upstream.on('error', closeBoth);
    });
  });
  const port = await freePort();
  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
  stack.defer(
    () =>
      new Promise((resolve) => {
        for (const client of sockets.clients) client.terminate();
        server.closeAllConnections();
        server.close(resolve);
      }),
  );
  return { url: `http://127.0.0.1:${port}`, rewritten: () => rewritten };
}
