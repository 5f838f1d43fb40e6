#!/usr/bin/env python3
"""Test traffic for the live dashboard and alert test (deploy/prometheus/test_live.sh).

Drives signaling nodes on loopback with real WebSocket clients (a minimal RFC 6455
client on the standard library) so that every metric the dashboards show moves:
calls across and within nodes (offer, answer, candidate, app-data, leave), client
`report`s with every outcome and candidate type, resumes on another node, failed
resumes, protocol errors, rate limiting, full rooms, oversized frames, dropped
sockets and sockets that stop answering pings.

    traffic.py --port 8081 --port 8082 --port 8083 --duration 20
    traffic.py --port 8081 --port 8082 --port 8083 --hold 30

The second form only holds calls across the nodes while faults are injected.

Prints a JSON summary and exits non-zero when the basics (joins, relays, resumes)
did not work. It connects to 127.0.0.1 only.
"""

import argparse
import base64
import itertools
import json
import os
import queue
import socket
import struct
import sys
import threading
import time

OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x2, 0x8, 0x9, 0xA
HOST = "127.0.0.1"


class Closed(Exception):
    pass


class WebSocket:
    """One client socket. A reader thread answers pings and queues text frames."""

    def __init__(self, port, answer_pings=True, path="/ws"):
        self.sock = socket.create_connection((HOST, port), timeout=5)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        self.sock.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise Closed(f"port {port}: connection closed during the handshake")
            head += chunk
        head, self.buffer = head.split(b"\r\n\r\n", 1)
        status = head.split(b"\r\n", 1)[0].decode(errors="replace")
        if " 101 " not in status + " ":
            raise Closed(f"port {port}: upgrade refused: {status}")
        self.port = port
        self.inbox = queue.Queue()
        self.lock = threading.Lock()
        self.closed = threading.Event()
        self.close_code = None
        self.answer_pings = answer_pings
        self.sock.settimeout(None)
        self.reader = threading.Thread(target=self._read_loop, daemon=True)
        self.reader.start()

    # -- frames --------------------------------------------------------------
    def _recv_exact(self, n):
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise Closed("eof")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def _read_frame(self):
        b1, b2 = self._recv_exact(2)
        opcode, length = b1 & 0x0F, b2 & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._recv_exact(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._recv_exact(8))
        mask = self._recv_exact(4) if b2 & 0x80 else None
        payload = self._recv_exact(length)
        if mask:
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        return opcode, payload

    def _read_loop(self):
        try:
            while True:
                opcode, payload = self._read_frame()
                if opcode == OP_PING:
                    if self.answer_pings:
                        self.send_frame(OP_PONG, payload)
                elif opcode == OP_TEXT:
                    self.inbox.put(json.loads(payload))
                elif opcode == OP_CLOSE:
                    if len(payload) >= 2:
                        self.close_code = struct.unpack("!H", payload[:2])[0]
                    try:
                        self.send_frame(OP_CLOSE, payload[:2])
                    except OSError:
                        pass
                    break
        except (Closed, OSError, ValueError):
            pass
        finally:
            self.closed.set()
            self.inbox.put(None)

    def send_frame(self, opcode, payload):
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            header = struct.pack("!BBH", 0x80 | opcode, 0xFE, n)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0xFF, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        with self.lock:
            self.sock.sendall(header + mask + masked)

    # -- messages ------------------------------------------------------------
    def send(self, message):
        if isinstance(message, (dict, list)):
            message = json.dumps(message)
        self.send_frame(OP_TEXT, message.encode())

    def recv(self, timeout=5.0):
        message = self.inbox.get(timeout=timeout)
        if message is None:
            self.inbox.put(None)
            raise Closed(f"port {self.port}: socket closed (code {self.close_code})")
        return message

    def expect(self, kind, timeout=5.0, code=None):
        """Waits for a message of type `kind` (and error `code`), skipping others."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"port {self.port}: no {kind} {code or ''}".strip())
            message = self.recv(left)
            if message.get("type") == kind and (code is None or message.get("code") == code):
                return message

    def close(self, code=1000):
        try:
            self.send_frame(OP_CLOSE, struct.pack("!H", code))
            self.closed.wait(2)
        except OSError:
            pass
        self.drop()

    def drop(self):
        """Closes the TCP connection without a close frame, as a lost network would."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


# -- scenarios -------------------------------------------------------------------
# Sessions that stopped answering pings, left for the node to time out.
DEAF = []


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}
        self.errors = []

    def add(self, key, n=1):
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + n

    def fail(self, scenario, error):
        with self.lock:
            if len(self.errors) < 20:
                self.errors.append(f"{scenario}: {error!r}")
            self.counts[f"{scenario}_failures"] = self.counts.get(f"{scenario}_failures", 0) + 1


def joined(port, room, name, answer_pings=True):
    ws = WebSocket(port, answer_pings=answer_pings)
    ws.expect("welcome")
    ws.send({"type": "join", "id": 1, "room": room, "name": name, "protocol": 1})
    return ws, ws.expect("joined")


REPORT_KINDS = list(
    itertools.product(["connected", "failed"], ["host", "srflx", "prflx", "relay", None])
)


def report(final, outcome, candidate_type, i):
    body = {"final": final, "outcome": outcome, "rttMs": 5 + (i * 7) % 180}
    if candidate_type:
        body["candidateType"] = candidate_type
    if outcome == "connected":
        body["iceConnectedMs"] = 80 + (i * 53) % 2500
    return {"type": "report", "report": body}


def run_call(stats, deadline, index, port_a, port_b):
    """Two peers negotiating over and over, both sending reports."""
    room = f"call-{index}-{os.getpid()}"
    a = b = None
    try:
        a, _ = joined(port_a, room, f"a{index}")
        b, joined_b = joined(port_b, room, f"b{index}")
        a.expect("peer-joined")
        peer_a, peer_b = joined_b["members"][0]["id"], joined_b["peer"]
        stats.add("joins", 2)
        for i in itertools.count():
            if time.monotonic() > deadline:
                break
            a.send({"type": "offer", "to": peer_b, "sdp": f"v=0\r\no=- {i} 1 IN IP4 127.0.0.1\r\n"})
            b.expect("offer")
            b.send({"type": "answer", "to": peer_a, "sdp": f"v=0\r\no=- {i} 2 IN IP4 127.0.0.1\r\n"})
            a.expect("answer")
            for sender, target, receiver in ((a, peer_b, b), (b, peer_a, a)):
                for c in range(2):
                    line = f"candidate:{c} 1 udp 2122260223 127.0.0.1 {50000 + c} typ host"
                    sender.send({"type": "candidate", "to": target,
                                 "candidate": {"candidate": line, "sdpMid": "0", "sdpMLineIndex": 0}})
                sender.send({"type": "candidate", "to": target, "candidate": None})
                sender.send({"type": "app-data", "to": target, "data": {"audio": i % 2 == 0, "video": True}})
                for _ in range(3):
                    receiver.expect("candidate")
                receiver.expect("app-data")
            outcome, candidate_type = REPORT_KINDS[(index + i) % len(REPORT_KINDS)]
            a.send(report(False, outcome, candidate_type, i))
            a.send(report(True, outcome, candidate_type, i))
            outcome, candidate_type = REPORT_KINDS[(index + i + 3) % len(REPORT_KINDS)]
            b.send(report(True, outcome, candidate_type, i + 1))
            stats.add("negotiations")
            stats.add("final_reports", 2)
            time.sleep(0.25)
        a.send({"type": "leave", "id": 9})
        a.expect("left")
        b.expect("peer-left")
        stats.add("leaves")
    except Exception as error:  # noqa: BLE001 - a scenario failure is counted, not fatal
        stats.fail("call", error)
    finally:
        for ws in (a, b):
            if ws:
                ws.close(1000)


def run_resumes(stats, deadline, ports):
    """A peer whose socket drops resumes its seat on the next node."""
    for i in itertools.count():
        if time.monotonic() > deadline:
            break
        room = f"resume-{i}-{os.getpid()}"
        stay = moving = fresh = None
        try:
            stay, _ = joined(ports[i % len(ports)], room, "stay")
            moving, joined_moving = joined(ports[(i + 1) % len(ports)], room, "moving")
            if i % 2:
                moving.close(4000)  # reconnecting
            else:
                moving.drop()  # the network went away
            fresh = WebSocket(ports[(i + 2) % len(ports)])
            fresh.expect("welcome")
            fresh.send({"type": "resume", "id": 2, "token": joined_moving["resumeToken"], "protocol": 1})
            fresh.expect("resumed")
            stats.add("resumes")
            fresh.send({"type": "offer", "to": joined_moving["members"][0]["id"], "sdp": "v=0\r\n"})
            stay.expect("offer")
            # A token that names no seat.
            fresh.close(1000)
            fresh = WebSocket(ports[i % len(ports)])
            fresh.expect("welcome")
            fresh.send({"type": "resume", "id": 3, "token": f"{room}.0000000000000000.bogus"})
            fresh.expect("error", code="resume-failed")
            stats.add("failed_resumes")
        except Exception as error:  # noqa: BLE001
            stats.fail("resume", error)
        finally:
            for ws in (stay, moving, fresh):
                if ws:
                    ws.close(1000)
        time.sleep(1.0)


BAD_MESSAGES = [
    ("bad-json", "{this is not json"),
    ("unknown-type", {"type": "teleport", "id": 1}),
    ("invalid-message", {"type": "offer"}),
    ("not-joined", {"type": "offer", "to": "0123456789abcdef", "sdp": "v=0"}),
    ("invalid-room", {"type": "join", "room": "no spaces allowed", "name": "x"}),
    ("invalid-name", {"type": "join", "room": "fine", "name": "   "}),
    ("unsupported-protocol", {"type": "join", "room": "fine", "name": "x", "protocol": 99}),
]


def run_errors(stats, deadline, port, index):
    """A clumsy client: one protocol error every 0.6 s, below the abuse limit."""
    ws = None
    try:
        ws = WebSocket(port)
        ws.expect("welcome")
        for i in itertools.count():
            if time.monotonic() > deadline:
                break
            code, message = BAD_MESSAGES[(i + index) % len(BAD_MESSAGES)]
            ws.send(message)
            ws.expect("error", code=code)
            stats.add(f"error_{code}")
            if i % len(BAD_MESSAGES) == len(BAD_MESSAGES) - 1:
                ws.send_frame(OP_BINARY, b"\x00\x01")
                ws.expect("error", code="binary-not-supported")
                stats.add("error_binary-not-supported")
            time.sleep(0.6)
        # Joined: a second join and a relay to nobody.
        ws.send({"type": "join", "id": 1, "room": f"clumsy-{index}-{os.getpid()}", "name": "c"})
        ws.expect("joined")
        ws.send({"type": "join", "id": 2, "room": "other", "name": "c"})
        ws.expect("error", code="already-joined")
        ws.send({"type": "candidate", "to": "0123456789abcdef", "candidate": None})
        ws.expect("error", code="unknown-peer")
        stats.add("error_already-joined")
        stats.add("error_unknown-peer")
    except Exception as error:  # noqa: BLE001
        stats.fail("errors", error)
    finally:
        if ws:
            ws.close(1000)


def run_flood(stats, deadline, ports):
    """Clients past their message rate: rate-limited, then closed for abuse."""
    for i in itertools.count():
        if time.monotonic() > deadline:
            break
        ws = None
        try:
            ws, _ = joined(ports[i % len(ports)], f"flood-{i}-{os.getpid()}", "flood")
            try:
                for n in range(260):
                    ws.send(report(False, "connected", "host", n))
            except OSError:
                pass  # closed for abuse while still sending
            limited = 0
            try:
                while True:
                    message = ws.recv(3)
                    if message.get("type") == "error" and message.get("code") == "rate-limited":
                        limited += 1
            except (Closed, queue.Empty):
                pass
            stats.add("rate_limited_errors", limited)
            stats.add(f"flood_closed_{ws.close_code}")
        except Exception as error:  # noqa: BLE001
            stats.fail("flood", error)
        finally:
            if ws:
                ws.close(1000)
        time.sleep(2.0)


def run_misc(stats, deadline, ports):
    """One-offs, repeated: a full room, a frame too big, a socket that stops answering pings."""
    for i in itertools.count():
        if time.monotonic() > deadline:
            break
        room = f"full-{i}-{os.getpid()}"
        members = []
        try:
            for n in range(8):
                ws, _ = joined(ports[n % len(ports)], room, f"m{n}")
                members.append(ws)
            extra = WebSocket(ports[i % len(ports)])
            members.append(extra)
            extra.expect("welcome")
            extra.send({"type": "join", "id": 1, "room": room, "name": "late"})
            extra.expect("error", code="room-full")
            stats.add("error_room-full")
            big = WebSocket(ports[(i + 1) % len(ports)])
            big.expect("welcome")
            big.send("x" * 70000)
            big.closed.wait(3)
            stats.add(f"too_big_closed_{big.close_code}")
            big.drop()
            # Joined, then deaf: never answers pings again.
            deaf, _ = joined(ports[(i + 2) % len(ports)], f"deaf-{i}-{os.getpid()}", "deaf",
                             answer_pings=False)
            members.append(deaf)
            stats.add("deaf_sessions")
        except Exception as error:  # noqa: BLE001
            stats.fail("misc", error)
        finally:
            for ws in members[:-1]:
                ws.close(1000)
            if members and not members[-1].answer_pings:
                # Left open without reading pongs, dropped at the very end.
                DEAF.append(members[-1])
            elif members:
                members[-1].close(1000)
        time.sleep(4.0)



def run_hold(stats, seconds, ports):
    """Calls spanning every pair of neighbouring nodes, held while faults are injected.

    Each peer sends app-data to the other twice a second, whatever happens: while
    the bus is down the nodes keep them in their outage queues and publish them
    when it is back; when a node dies, its peers' seats are swept by the others.
    Nothing here fails the run.
    """
    deadline = time.monotonic() + seconds
    pairs = []
    for index in range(len(ports)):
        room = f"hold-{index}-{os.getpid()}"
        a, _ = joined(ports[index], room, "a")
        b, joined_b = joined(ports[(index + 1) % len(ports)], room, "b")
        pairs.append((a, joined_b["members"][0]["id"], b, joined_b["peer"]))
        stats.add("joins", 2)
    while time.monotonic() < deadline:
        for a, peer_a, b, peer_b in pairs:
            for ws, to in ((a, peer_b), (b, peer_a)):
                if ws.closed.is_set():
                    continue
                try:
                    ws.send({"type": "app-data", "to": to, "data": {"audio": True}})
                    stats.add("hold_sent")
                except OSError:
                    pass
        for a, _, b, _ in pairs:
            for ws in (a, b):
                while True:
                    try:
                        message = ws.inbox.get_nowait()
                    except queue.Empty:
                        break
                    if message is None:
                        break
                    kind = message.get("type")
                    stats.add(f"hold_{kind}_{message.get('code') or message.get('reason') or ''}".rstrip("_"))
        time.sleep(0.5)
    for a, _, b, _ in pairs:
        for ws in (a, b):
            if not ws.closed.is_set():
                ws.close(1000)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, action="append", required=True, help="a node's port")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of traffic")
    parser.add_argument("--calls", type=int, default=6, help="concurrent two-peer calls")
    parser.add_argument("--hold", type=float, metavar="SECONDS",
                        help="only hold calls across the nodes for SECONDS (for fault injection)")
    args = parser.parse_args()
    ports = args.port
    stats = Stats()
    if args.hold:
        run_hold(stats, args.hold, ports)
        print(json.dumps({"counts": dict(sorted(stats.counts.items()))}, indent=2))
        return 0
    deadline = time.monotonic() + args.duration
    threads = []
    for index in range(args.calls):
        a = ports[index % len(ports)]
        # Even calls cross nodes, odd ones stay on one node.
        b = ports[(index + 1) % len(ports)] if index % 2 == 0 else a
        threads.append(threading.Thread(target=run_call, args=(stats, deadline, index, a, b)))
    for index, port in enumerate(ports):
        threads.append(threading.Thread(target=run_errors, args=(stats, deadline, port, index)))
    threads.append(threading.Thread(target=run_resumes, args=(stats, deadline, ports)))
    threads.append(threading.Thread(target=run_flood, args=(stats, deadline, ports)))
    threads.append(threading.Thread(target=run_misc, args=(stats, deadline, ports)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for ws in DEAF:
        ws.drop()
    summary = {"counts": dict(sorted(stats.counts.items())), "errors": stats.errors}
    print(json.dumps(summary, indent=2))
    basics = ["joins", "negotiations", "resumes", "final_reports", "rate_limited_errors"]
    missing = [key for key in basics if not stats.counts.get(key)]
    if missing:
        print(f"traffic: nothing counted for {', '.join(missing)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
