#!/usr/bin/env python3
"""Local targets for bench/soak.sh: four loopback HTTP servers that answer like GlitchTip
(healthy), answer slowly, fail, or misbehave. Stdlib only; every socket on 127.0.0.1.

    soak_targets.py PORTFILE      writes "healthy slow failing hostile" ports to PORTFILE

Hostile answers rotate per request: an endless body, headers dripped one byte a second, a
garbage status line, a connection closed at once, a request left without any answer.
Every hostile answer ends within 30 s (the exporter's deadline is far shorter).
"""
import asyncio
import itertools
import sys

BODIES = {
    "/_health/": (200, b"ok"),
    "/api/settings/": (200, b'{"version": "6.0.0"}'),
    "/api/0/organizations/": (401, b'{"detail": "Unauthorized"}'),
    "/": (200, b"<title>GlitchTip</title>"),
}


def answer(status, body):
    reason = {200: b"OK", 401: b"Unauthorized", 500: b"Internal Server Error"}[status]
    return (b"HTTP/1.1 %d %s\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
            % (status, reason, len(body)) + body)


async def read_path(reader):
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    return head.split(b" ", 2)[1].decode("latin-1").split("?")[0]


def server(kind, hostile_turn):
    async def handle(reader, writer):
        try:
            path = await read_path(reader)
            status, body = BODIES.get(path, (404, b"no"))
            if kind == "healthy":
                writer.write(answer(status, body))
            elif kind == "slow":
                await asyncio.sleep(3)
                writer.write(answer(status, body))
            elif kind == "failing":
                writer.write(answer(500, b"boom"))
            else:
                turn = next(hostile_turn)
                if turn == 0:  # an endless body (the exporter stops at max_body_bytes)
                    writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                    chunk = b"%x\r\n%s\r\n" % (65536, b"x" * 65536)
                    for _ in range(400):
                        writer.write(chunk)
                        await writer.drain()
                elif turn == 1:  # headers one byte a second
                    for byte in b"HTTP/1.1 200 OK\r\nx-slow: yes\r\n":
                        writer.write(bytes([byte]))
                        await writer.drain()
                        await asyncio.sleep(1)
                elif turn == 2:
                    writer.write(b"NOT-HTTP garbage\x00\xff\r\n\r\n")
                elif turn == 3:
                    pass  # closed at once
                else:
                    await asyncio.sleep(30)  # never answered
            await writer.drain()
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()
    return handle


async def main(portfile):
    turn = itertools.cycle(range(5))
    servers = []
    for kind in ("healthy", "slow", "failing", "hostile"):
        servers.append(await asyncio.start_server(server(kind, turn), "127.0.0.1", 0, backlog=1024))
    ports = [str(s.sockets[0].getsockname()[1]) for s in servers]
    with open(portfile, "w") as f:
        f.write(" ".join(ports) + "\n")
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
