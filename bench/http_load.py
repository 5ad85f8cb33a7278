"""HTTP load from one asyncio process: C keep-alive connections GET paths for S seconds.

    python -m bench.http_load URL COOKIE --paths /a,/b --concurrency 200 --seconds 10

Prints one JSON line: requests, requests/s, statuses, latency p50/p99 (ms). Raw HTTP/1.1: a
Python HTTP client library would be the bottleneck, not the server.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import time
from urllib.parse import urlparse

import requests


async def worker(host: str, port: int, cookie: str, agent: str, paths: list[str], until: float, stats: dict) -> None:
    """One connection, request after request, reconnecting when the server closes it."""
    i = 0
    reader = writer = None
    cookie_line = f"Cookie: {cookie}\r\n" if cookie else ""  # none: an anonymous client
    while time.monotonic() < until:
        path = paths[i % len(paths)]
        i += 1
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            began = time.monotonic()
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: {agent}\r\n"
                         f"{cookie_line}\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length, close = 0, False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
                elif name.lower() == b"connection" and b"close" in value.lower():
                    close = True
            if length:
                await reader.readexactly(length)
            elif close or b"content-length" not in head.lower():
                await reader.read()  # body until close
                close = True
            stats["lat"].append((time.monotonic() - began) * 1000)
            stats["status"][status] = stats["status"].get(status, 0) + 1
            if close:
                writer.close()
                writer = None
        except (OSError, asyncio.IncompleteReadError, ValueError):
            stats["status"]["error"] = stats["status"].get("error", 0) + 1
            if writer is not None:
                writer.close()
            writer = None
            await asyncio.sleep(0.05)
    if writer is not None:
        writer.close()


async def run(args: argparse.Namespace) -> dict:
    """Run the load; return the figures."""
    url = urlparse(args.url)
    stats: dict = {"lat": [], "status": {}}
    began = time.monotonic()
    until = began + args.seconds
    await asyncio.gather(*(worker(url.hostname, url.port, args.cookie, args.user_agent, args.paths.split(","), until, stats)
                           for _ in range(args.concurrency)))
    elapsed = time.monotonic() - began
    lat = sorted(stats["lat"])
    pick = (lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] if lat else float("nan"))
    return {"requests": len(lat), "rps": len(lat) / elapsed, "status": {str(k): v for k, v in stats["status"].items()},
            "p50_ms": pick(0.5), "p99_ms": pick(0.99)}


def main() -> None:
    """Parse arguments, run, print JSON."""
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("cookie")
    parser.add_argument("--paths", default="/")
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10)
    # The browser that logged in: the harness's sessions are requests'. Flask-Login's session
    # protection takes another User-Agent for a stolen cookie and rewrites the session on every
    # request (1.79 -> 1.65 ms of CPU per poll): work no browser, which keeps its agent, causes.
    parser.add_argument("--user-agent", default=requests.utils.default_user_agent())
    print(json.dumps(asyncio.run(run(parser.parse_args()))), flush=True)


if __name__ == "__main__":
    main()
