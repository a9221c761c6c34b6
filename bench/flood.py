#!/usr/bin/env python3
"""Client flood against the exporter's own port: what it costs and whether it comes back.

    python3 bench/flood.py "$(scripts/build.sh)"        # the release binary, as operators run it
    python3 bench/flood.py BINARY --unfinished 1000 --idle 5000 --after 60

Starts BINARY on 127.0.0.1 (a free port, default limits, one target on a refused loopback
port so that no probe leaves the machine), then:
  1. idle: RSS after the start-up settles;
  2. unfinished: N connections that each send a request line and 7,000 bytes of a header that
     never ends (the old server held up to ~400 KiB per such connection); RSS while they
     are open, and whether /metrics and /-/healthy still answer;
  3. idle connections: M connections that send nothing; RSS while they are open, how many
     the exporter kept open, and /metrics again;
  4. every client closed: RSS 60 s later (the allocator's trim runs every 10 s).
RSS is VmRSS of the exporter's own process from /proc. Everything goes to 127.0.0.1, every
loop is bounded in count and time, and the exporter is ended by its PID.
"""

import argparse
import os
import resource
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port, path, timeout=5.0):
    """Status line of GET path, or the error; and the seconds it took."""
    start = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            data = s.recv(64)
            line = data.split(b"\r\n", 1)[0].decode(errors="replace") or "closed"
    except OSError as e:
        line = f"error: {e}"
    return line, time.monotonic() - start


def open_many(port, count, payload, deadline):
    socks = []
    for _ in range(count):
        if time.monotonic() > deadline:
            break
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=2)
            if payload:
                s.sendall(payload)
            socks.append(s)
        except OSError:
            break
    return socks


def still_open(socks):
    """How many of socks the server has not closed (no EOF and no reset pending)."""
    open_count = 0
    for s in socks:
        try:
            poller = select.poll()
            poller.register(s, select.POLLIN)
            if not poller.poll(0):
                open_count += 1
            elif s.recv(1, socket.MSG_PEEK) != b"":
                open_count += 1
        except OSError:
            pass
    return open_count


def close_all(socks):
    for s in socks:
        try:
            s.close()
        except OSError:
            pass


def flood(port, pid, count, payload, what, within):
    """Opens count connections that each send payload; reports RSS while they are open,
    how many the exporter kept, and whether it still answers. Returns the sockets."""
    socks = open_many(port, count, payload, time.monotonic() + within)
    time.sleep(1)
    report(f"RSS with {len(socks)} {what} connections (MiB)", f"{rss_mib(pid):.1f}")
    report("  kept open by the exporter", still_open(socks))
    for path in ("/metrics", "/-/healthy"):
        line, took = get(port, path)
        report(f"  GET {path} during the flood", f"{line} in {took * 1000:.0f} ms")
    return socks


def report(name, value):
    print(f"{name:<58} {value}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--unfinished", type=int, default=1000)
    ap.add_argument("--idle", type=int, default=5000)
    ap.add_argument("--after", type=int, default=60)
    args = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = args.unfinished + args.idle + 100
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))

    port = free_port()
    refused = free_port()
    work = tempfile.mkdtemp(prefix="flood-")
    log = open(os.path.join(work, "exporter.log"), "w")
    proc = subprocess.Popen(
        [os.path.abspath(args.binary), "--listen", f"127.0.0.1:{port}", "--target", f"http://127.0.0.1:{refused}"],
        stdout=log, stderr=subprocess.STDOUT, cwd=work, env={"PATH": "/usr/bin:/bin"},
    )
    try:
        deadline = time.monotonic() + 15
        while get(port, "/-/healthy", 1)[0].split(" ")[1:2] != ["200"]:
            if time.monotonic() > deadline or proc.poll() is not None:
                sys.exit("the exporter did not start")
            time.sleep(0.1)
        time.sleep(5)
        pid = proc.pid
        with open(f"/proc/{pid}/limits") as f:
            limit = next(l for l in f if l.startswith("Max open files")).split()[3:5]
        report("open file limit of the exporter (soft hard)", " ".join(limit))
        report("RSS idle (MiB)", f"{rss_mib(pid):.1f}")

        # Just under max_header_bytes (8192): the most one connection may make the server
        # buffer.
        head = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 7000
        socks = flood(port, pid, args.unfinished, head, "unfinished-header", 20)
        close_all(socks)
        socks = flood(port, pid, args.idle, b"", "idle", 30)
        with open(f"/proc/{pid}/status") as f:
            hwm = next(l for l in f if l.startswith("VmHWM:")).split()[1]
        report("peak RSS (MiB, VmHWM)", f"{int(hwm) / 1024:.1f}")
        close_all(socks)

        time.sleep(args.after)
        report(f"RSS {args.after} s after every client closed (MiB)", f"{rss_mib(pid):.1f}")
        line, took = get(port, "/metrics")
        report("GET /metrics after", f"{line} in {took * 1000:.0f} ms")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    with open(os.path.join(work, "exporter.log")) as f:
        lines = f.read().splitlines()
    noisy = [l for l in lines if "accept error" in l or "connection limit" in l]
    report("exporter log lines about accept errors or the limit", len(noisy))


if __name__ == "__main__":
    main()
