// The seed's signaling design, kept as the benchmark baseline: one Node.js
// process per node, Socket.IO over WebSocket, and @socket.io/redis-adapter for
// fan-out across nodes. The adapter pattern-subscribes every node to one channel
// prefix (`socket.io#/#*`), so every node receives every room broadcast and every
// message sent to a peer (`io.to(peerId)`), whether or not it holds that peer.
//
// It speaks the node's JSON messages (docs/protocol.md) as the payload of a
// Socket.IO event named "msg" (`42["msg",{...}]`), so that vc-load drives both
// with the same scenarios. Only what the benchmarks use is implemented: welcome,
// join/joined (members from the adapter's fetchSockets across nodes), peer-joined,
// offer/answer/candidate/app-data with `to` -> `from`, leave/left, peer-left,
// report (ignored) and error codes for bad input. No resume, auth, rate limits,
// presence in Redis or ICE credentials.
//
// Environment: PORT (3000), NODE_ID, REDIS_URL (none: a single node),
// ROOM_CAPACITY (8). GET /readyz answers 200 once the adapter is connected.
'use strict';

const http = require('http');
const { Server } = require('socket.io');

const port = Number(process.env.PORT || 3000);
const nodeId = process.env.NODE_ID || `sio-${process.pid}`;
const redisUrl = process.env.REDIS_URL || '';
const capacity = Number(process.env.ROOM_CAPACITY || 8);
const ROOM = /^[A-Za-z0-9_-]{1,64}$/;
const RELAYED = new Set(['offer', 'answer', 'candidate', 'app-data']);
const KNOWN = new Set(['join', 'resume', 'offer', 'answer', 'candidate', 'app-data', 'leave', 'report']);

let ready = false;
const httpServer = http.createServer((req, res) => {
  if (req.url === '/readyz') {
    res.writeHead(ready ? 200 : 503, { 'content-type': 'text/plain' });
    res.end(ready ? 'ready' : 'starting');
    return;
  }
  res.writeHead(404);
  res.end();
});

const io = new Server(httpServer, {
  transports: ['websocket'],
  serveClient: false,
  perMessageDeflate: false,
  pingInterval: 10000,
  pingTimeout: 30000,
  maxHttpBufferSize: 65536,
});

function send(socket, message) {
  socket.emit('msg', message);
}

function error(socket, code, message, id) {
  const m = { type: 'error', code, message };
  if (id !== undefined) m.id = id;
  send(socket, m);
}

async function join(socket, msg) {
  if (socket.data.room) return error(socket, 'already-joined', 'already in a room', msg.id);
  if (typeof msg.room !== 'string' || !ROOM.test(msg.room)) {
    return error(socket, 'invalid-room', 'bad room name', msg.id);
  }
  const name = typeof msg.name === 'string' ? msg.name.trim() : '';
  if (!name || name.length > 64) return error(socket, 'invalid-name', 'bad display name', msg.id);
  // The room as every node sees it, through the adapter's request to all nodes.
  const others = (await io.in(msg.room).fetchSockets())
    .filter((s) => s.id !== socket.id && s.data.room === msg.room)
    .sort((a, b) => a.data.joinedAt - b.data.joinedAt);
  if (others.length >= capacity) return error(socket, 'room-full', 'room is full', msg.id);
  socket.data = { room: msg.room, name, joinedAt: Date.now() };
  socket.join(msg.room);
  const reply = {
    type: 'joined',
    room: msg.room,
    peer: socket.id,
    name,
    members: others.map((s) => ({ id: s.id, name: s.data.name })),
    iceServers: [],
    resumeToken: '',
    resumeWindowMs: 0,
  };
  if (msg.id !== undefined) reply.id = msg.id;
  send(socket, reply);
  socket.to(msg.room).emit('msg', { type: 'peer-joined', peer: { id: socket.id, name } });
}

function leave(socket, reason) {
  const room = socket.data.room;
  if (!room) return false;
  socket.leave(room);
  socket.data = {};
  io.to(room).emit('msg', { type: 'peer-left', peer: socket.id, reason });
  return true;
}

io.on('connection', (socket) => {
  socket.data = {};
  send(socket, { type: 'welcome', protocol: 1, node: nodeId, maxFrameBytes: 65536 });
  socket.on('msg', (msg) => {
    if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) {
      return error(socket, 'invalid-message', 'a message must be a JSON object');
    }
    if (typeof msg.type !== 'string') return error(socket, 'invalid-message', 'missing type', msg.id);
    if (!KNOWN.has(msg.type)) return error(socket, 'unknown-type', `unknown type ${msg.type}`, msg.id);
    if (RELAYED.has(msg.type)) {
      if (!socket.data.room) return error(socket, 'not-joined', 'join a room first', msg.id);
      if (typeof msg.to !== 'string') return error(socket, 'invalid-message', 'missing to', msg.id);
      const out = { ...msg, from: socket.id };
      delete out.to;
      delete out.id;
      // Every socket sits in a room named by its id: with the Redis adapter this
      // is a broadcast on the shared channel prefix, read by every node.
      io.to(msg.to).emit('msg', out);
      return;
    }
    switch (msg.type) {
      case 'join':
        join(socket, msg).catch((e) => error(socket, 'unavailable', String(e), msg.id));
        return;
      case 'leave':
        if (!leave(socket, 'left')) return error(socket, 'not-joined', 'join a room first', msg.id);
        send(socket, msg.id === undefined ? { type: 'left' } : { type: 'left', id: msg.id });
        return;
      case 'resume':
        return error(socket, 'resume-failed', 'the baseline does not resume', msg.id);
      default:
        return; // report: accepted, no reply
    }
  });
  socket.on('disconnect', () => leave(socket, 'disconnected'));
});

async function main() {
  if (redisUrl) {
    const { createClient } = require('redis');
    const { createAdapter } = require('@socket.io/redis-adapter');
    const pub = createClient({ url: redisUrl });
    const sub = pub.duplicate();
    await Promise.all([pub.connect(), sub.connect()]);
    io.adapter(createAdapter(pub, sub, { requestsTimeout: 5000 }));
  }
  httpServer.listen(port, '127.0.0.1', () => {
    ready = true;
    console.log(`socket.io baseline ${nodeId} on 127.0.0.1:${port}${redisUrl ? ' with redis' : ''}`);
  });
}

process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
main().catch((e) => {
  console.error(e);
  process.exit(1);
});
