#!/usr/bin/env python3
"""A bad link for the browser tests: delay, jitter and loss on the packets that
iptables sends to one NFQUEUE, as `tc qdisc ... netem` would do where the kernel
has no netem.

Each packet is held for `delay` plus a uniform random `[-jitter, +jitter]` and then
accepted, or dropped at once with probability `loss`; packets are not kept in
order, as with netem's jitter. One thread: the queue's socket and the heap of held
packets are served by one `select` loop, so verdicts never race.

Run it inside the namespace whose iptables rules say `-j NFQUEUE --queue-num N`
(the queue belongs to the network namespace of the process that binds it). It
prints `ready` once bound, and on SIGTERM or SIGINT a JSON line of what it did.
Needs root and the NetfilterQueue package (pip), which builds against
libnetfilter-queue.
"""

import argparse
import heapq
import json
import math
import os
import random
import select
import signal
import sys
import time

from netfilterqueue import COPY_META, NetfilterQueue


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queue", type=int, required=True, help="NFQUEUE number to bind")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="one-way delay added to each packet")
    parser.add_argument("--jitter-ms", type=float, default=0.0, help="uniform spread around the delay")
    parser.add_argument("--loss", type=float, default=0.0, help="fraction of packets dropped, 0 to 1")
    parser.add_argument("--seed", type=int, default=None, help="random seed, for a repeatable run")
    parser.add_argument("--max-held", type=int, default=8192, help="queue length in the kernel")
    args = parser.parse_args(argv)
    if args.delay_ms < 0 or args.jitter_ms < 0 or args.jitter_ms > args.delay_ms:
        parser.error("need 0 <= jitter-ms <= delay-ms")
    if not 0.0 <= args.loss <= 1.0:
        parser.error("loss is a fraction between 0 and 1")
    return args


class Shaper:
    def __init__(self, delay_s, jitter_s, loss, rng):
        self.delay_s = delay_s
        self.jitter_s = jitter_s
        self.loss = loss
        self.rng = rng
        # (due, sequence, packet): at most --max-held, since the kernel queues no more.
        self.held = []
        self.sequence = 0
        self.seen = 0
        self.dropped = 0
        self.accepted = 0
        self.delay_sum_s = 0.0

    def on_packet(self, packet):
        self.seen += 1
        if self.loss > 0 and self.rng.random() < self.loss:
            self.dropped += 1
            packet.drop()
            return
        hold = self.delay_s + self.rng.uniform(-self.jitter_s, self.jitter_s)
        if hold <= 0:
            self.accepted += 1
            packet.accept()
            return
        self.sequence += 1
        self.delay_sum_s += hold
        heapq.heappush(self.held, (time.monotonic() + hold, self.sequence, packet))

    def release(self, until):
        """Lets go of every packet due by `until` (a time.monotonic() value)."""
        while self.held and self.held[0][0] <= until:
            _, _, packet = heapq.heappop(self.held)
            self.accepted += 1
            packet.accept()

    def seconds_to_next(self):
        if not self.held:
            return None
        return max(0.0, self.held[0][0] - time.monotonic())

    def summary(self):
        delayed = self.sequence
        return {
            "seen": self.seen,
            "dropped": self.dropped,
            "accepted": self.accepted,
            "meanDelayMs": round(1000 * self.delay_sum_s / delayed, 1) if delayed else 0,
        }


def main(argv):
    args = parse_args(argv)
    shaper = Shaper(args.delay_ms / 1000, args.jitter_ms / 1000, args.loss, random.Random(args.seed))

    # Signals only wake the loop; it ends between two verdicts, never inside one.
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    stopping = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.append(True))

    queue = NetfilterQueue()
    queue.bind(args.queue, shaper.on_packet, max_len=args.max_held, mode=COPY_META)
    fd = queue.get_fd()
    print(f"ready queue={args.queue}", flush=True)
    try:
        while not stopping:
            readable, _, _ = select.select([fd, wake_read], [], [], shaper.seconds_to_next())
            if fd in readable:
                queue.run(block=False)
            if wake_read in readable:
                os.read(wake_read, 64)
            shaper.release(time.monotonic())
    finally:
        # Held packets go out now rather than being lost with the queue.
        shaper.release(math.inf)
        print(json.dumps(shaper.summary()), flush=True)
        queue.unbind()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
