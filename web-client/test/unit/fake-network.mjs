// An in-memory stand-in for WebSocket and the node on the other end, so that the
// client library's state machine can be driven frame by frame. Delivery is
// asynchronous, like a real socket's.

const CONNECTING = 0;
const OPEN = 1;
const CLOSING = 2;
const CLOSED = 3;

const tick = () => new Promise((resolve) => setImmediate(resolve));

/** Polls `predicate` until it returns a truthy value, or fails after `timeoutMs`. */
export async function eventually(predicate, { timeoutMs = 2000, message = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = predicate();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${message}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

/** A queue whose `next()` waits for the next item, failing after a deadline. */
class Inbox {
  #items = [];
  #waiters = [];
  /** Items it returns false for are taken out before they are queued. */
  filter = () => true;

  push(item) {
    if (!this.filter(item)) return;
    const waiter = this.#waiters.shift();
    if (waiter) waiter(item);
    else this.#items.push(item);
  }

  next(timeoutMs = 2000, what = 'an item') {
    if (this.#items.length) return Promise.resolve(this.#items.shift());
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters.splice(this.#waiters.indexOf(wake), 1);
        reject(new Error(`timed out waiting for ${what}`));
      }, timeoutMs);
      const wake = (item) => {
        clearTimeout(timer);
        resolve(item);
      };
      this.#waiters.push(wake);
    });
  }

  get size() {
    return this.#items.length;
  }
}

/** The node's side of one socket. */
export class ServerConnection {
  constructor(socket) {
    this.socket = socket;
    this.received = new Inbox();
    this.pings = 0;
    this.closeCode = null;
    this.closed = new Promise((resolve) => {
      this.markClosed = (code) => {
        this.closeCode = code;
        resolve(code);
      };
    });
  }

  send(message) {
    if (this.socket.blackholed) return;
    const data = JSON.stringify(message);
    setImmediate(() => {
      if (this.socket.readyState === OPEN && !this.socket.blackholed) this.socket.onmessage?.({ data });
    });
  }

  /** Answers every `ping` the client sends from now on with its `pong`. */
  answerPings() {
    this.received.filter = (message) => {
      if (message.type !== 'ping') return true;
      this.pings += 1;
      this.send({ type: 'pong', id: message.id });
      return false;
    };
  }

  /**
   * The network under the socket goes away without a word, as when a laptop moves
   * to another uplink: nothing the client sends arrives, nothing the node sends is
   * delivered, and a close the client starts does not finish (no `close` event)
   * until {@link heal}.
   */
  blackhole() {
    this.socket.blackholed = true;
  }

  /** The network is back: frames flow again, and a close started meanwhile completes. */
  heal() {
    this.socket.blackholed = false;
    if (this.socket.readyState === CLOSING) this.socket.finishClose();
  }

  welcome(node = 'node-a') {
    this.send({ type: 'welcome', protocol: 1, node, maxFrameBytes: 65536 });
  }

  /** The next message the client sent on this socket, parsed. */
  next(type) {
    return this.received.next(2000, type ? `a ${type}` : 'a client message').then((message) => {
      if (type && message.type !== type) {
        throw new Error(`expected ${type}, got ${JSON.stringify(message)}`);
      }
      return message;
    });
  }

  /** Closes from the node's side (1006: the network dropped). */
  drop(code = 1006) {
    if (this.socket.readyState === CLOSED) return;
    this.socket.readyState = CLOSED;
    this.markClosed(code);
    setImmediate(() => this.socket.onclose?.({ code, reason: '', wasClean: code !== 1006 }));
  }
}

/** Hands out FakeWebSocket constructors and the server sides of their sockets. */
export class FakeNetwork {
  #accepted = new Inbox();
  /** While true, new sockets fail to connect, as if no node were listening. */
  refuse = false;
  attempts = 0;
  WebSocket;

  constructor() {
    const network = this;
    this.WebSocket = class FakeWebSocket {
      constructor(url) {
        this.url = url;
        this.readyState = CONNECTING;
        network.attempts += 1;
        if (network.refuse) {
          setImmediate(() => {
            this.readyState = CLOSED;
            this.onerror?.({});
            this.onclose?.({ code: 1006, reason: '', wasClean: false });
          });
          return;
        }
        this.server = new ServerConnection(this);
        setImmediate(() => {
          this.readyState = OPEN;
          this.onopen?.({});
          network.#accepted.push(this.server);
        });
      }

      send(data) {
        if (this.readyState !== OPEN) throw new Error('send on a socket that is not open');
        if (this.blackholed) return;
        this.server.received.push(JSON.parse(data));
      }

      close(code = 1005, reason = '') {
        if (this.readyState === CLOSED || this.readyState === CLOSING) return;
        this.closing = { code, reason };
        this.readyState = CLOSING;
        if (!this.blackholed) this.finishClose();
      }

      finishClose() {
        const { code, reason } = this.closing;
        this.readyState = CLOSED;
        this.server.markClosed(code);
        setImmediate(() => this.onclose?.({ code, reason, wasClean: true }));
      }
    };
  }

  /** The server side of the next socket the client opens. */
  nextConnection(timeoutMs = 2000) {
    return this.#accepted.next(timeoutMs, 'a connection');
  }

  get pendingConnections() {
    return this.#accepted.size;
  }
}

export { tick };
