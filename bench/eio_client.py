"""Many raw Engine.IO/Socket.IO websocket clients in one asyncio process (far cheaper than python-socketio).

    python -m bench.eio_client URL COOKIES_FILE --sockets N [--rate R] [--hold S] [--measure|--record|--count]

COOKIES_FILE holds one Cookie header a line; socket i uses line i mod len. The process prints
one JSON line when done: connects, refusals, connect latencies, and (with --measure) the latency
([receipt time, ms]) of every `task_progress` event whose payload carries `sent` (time.monotonic() of the publisher:
CLOCK_MONOTONIC is one clock for every process of the machine).
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import struct
import sys
import time
from urllib.parse import urlparse


class Socket:
    """One websocket carrying Engine.IO 4 / Socket.IO 5 on the default namespace."""

    def __init__(self, host: str, port: int, cookie: str) -> None:
        self.host, self.port, self.cookie = host, port, cookie
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> str:
        """Handshake; returns 'ok' or the reason it failed."""
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        key = base64.b64encode(os.urandom(16)).decode()
        self.writer.write((
            f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\nCookie: {self.cookie}\r\n\r\n").encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            return "http " + head.split(b"\r\n", 1)[0].decode(errors="replace")
        opening = await self.recv()  # 0{"sid":...}
        if not opening.startswith("0"):
            return "no open packet"
        await self.send("40")
        while True:
            packet = await self.recv()
            if packet == "2":
                await self.send("3")
                continue
            if packet.startswith("40"):
                return "ok"
            return "refused " + packet[:80]

    async def send(self, text: str) -> None:
        """One masked text frame (clients must mask)."""
        data = text.encode()
        mask = os.urandom(4)
        header = bytes([0x81])
        n = len(data)
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 65536:
            header += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        self.writer.write(header + mask + masked)
        await self.writer.drain()

    async def recv(self) -> str:
        """The next text frame's payload (pings of the websocket layer are answered)."""
        while True:
            b0, b1 = await self.reader.readexactly(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", await self.reader.readexactly(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", await self.reader.readexactly(8))[0]
            payload = await self.reader.readexactly(n)
            opcode = b0 & 0x0F
            if opcode == 0x8:
                raise ConnectionError("closed by server")
            if opcode == 0x9:  # websocket ping
                self.writer.write(bytes([0x8A, 0x80]) + os.urandom(4))
                continue
            if opcode in (0x1, 0x0):
                return payload.decode()

    def close(self) -> None:
        """Drop the TCP connection (as a vanished client would)."""
        if self.writer:
            self.writer.close()


async def run(args: argparse.Namespace) -> dict:
    """Connect N sockets at the given rate, hold them, record events, disconnect together."""
    url = urlparse(args.url)
    cookies = [line.strip() for line in open(args.cookies) if line.strip()]
    sockets: list[Socket] = []
    outcomes: dict[str, int] = {}
    connect_ms: list[float] = []
    latencies: list[float] = []
    dropped = 0

    records: list[list] = []
    counted = {"events": 0, "first_at": None, "last_at": None}

    async def listen(sock: Socket, index: int) -> None:
        nonlocal dropped
        try:
            while True:
                packet = await sock.recv()
                if packet == "2":
                    await sock.send("3")
                elif args.count and packet.startswith("42"):
                    # Throughput only: no JSON parsing, so this process is not the bottleneck.
                    now = time.monotonic()
                    counted["events"] += 1
                    counted["first_at"] = counted["first_at"] or now
                    counted["last_at"] = now
                elif args.record and packet.startswith("42"):
                    data = json.loads(packet[2:])[1]
                    records.append([index, data.get("task_id"), data.get("status")])
                elif args.measure and packet.startswith("42"):
                    now = time.monotonic()
                    name, data = json.loads(packet[2:])
                    if isinstance(data, dict) and "sent" in data:
                        latencies.append([now, (now - data["sent"]) * 1000, data.get("seq", 0)])
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            dropped += 1
        except asyncio.CancelledError:
            pass

    async def one(i: int) -> None:
        sock = Socket(url.hostname, url.port, cookies[i % len(cookies)])
        began = time.monotonic()
        try:
            outcome = await asyncio.wait_for(sock.connect(), args.timeout)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError) as exc:
            outcome = type(exc).__name__
        outcomes[outcome.split(" ")[0]] = outcomes.get(outcome.split(" ")[0], 0) + 1
        if outcome == "ok":
            connect_ms.append((time.monotonic() - began) * 1000)
            sockets.append(sock)
            tasks.append(asyncio.create_task(listen(sock, i)))
        else:
            sock.close()

    tasks: list[asyncio.Task] = []
    began = time.monotonic()
    pending = []
    for i in range(args.sockets):
        pending.append(asyncio.create_task(one(i)))
        if args.rate:
            await asyncio.sleep(1 / args.rate)
    await asyncio.gather(*pending)
    connected_s = time.monotonic() - began
    print(json.dumps({"phase": "connected", "ok": outcomes.get("ok", 0)}), flush=True)
    if args.hold:
        await asyncio.sleep(args.hold)
    elif not sys.stdin.isatty():
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # the bench says when
    still = len(sockets) - dropped
    for task in tasks:
        task.cancel()
    for sock in sockets:
        sock.close()
    return {"outcomes": outcomes, "connected_s": connected_s, "connect_ms": connect_ms,
            "latencies_ms": latencies, "dropped": dropped, "held": still, "records": records, "counted": counted}


def main() -> None:
    """Parse arguments, run, print the result as one JSON line."""
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("cookies")
    parser.add_argument("--sockets", type=int, default=1)
    parser.add_argument("--rate", type=float, default=0, help="connects per second (0: all at once)")
    parser.add_argument("--hold", type=float, default=0, help="seconds to hold (0: until a line on stdin)")
    parser.add_argument("--timeout", type=float, default=60)
    parser.add_argument("--measure", action="store_true", help="record task_progress latencies")
    parser.add_argument("--record", action="store_true", help="record [socket index, task_id, status] of every event")
    parser.add_argument("--count", action="store_true", help="count events and note the first and last receipt")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args))), flush=True)


if __name__ == "__main__":
    main()
