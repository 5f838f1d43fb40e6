// An in-memory stand-in for WebSocket and the node on the other end, so that the
// client library's state machine can be driven frame by frame. Delivery is
// asynchronous, like a real socket's.

const CONNECTING = 0;
const OPEN = 1;
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

  push(item) {
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
    this.closeCode = null;
    this.closed = new Promise((resolve) => {
      this.markClosed = (code) => {
        this.closeCode = code;
        resolve(code);
      };
    });
  }

  send(message) {
    const data = JSON.stringify(message);
    setImmediate(() => {
      if (this.socket.readyState === OPEN) this.socket.onmessage?.({ data });
    });
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
        this.server.received.push(JSON.parse(data));
      }

      close(code = 1005, reason = '') {
        if (this.readyState === CLOSED) return;
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
