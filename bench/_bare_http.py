"""The baseline for ``bench/check.py``: the least an HTTP server in Python can do.

One uvloop protocol that answers every request with a fixed ~400-byte JSON body, with no
parsing beyond finding the end of each request's head (GETs only, no bodies). Its latency
under the same load generator, in the same run, is the floor the machine, the kernel's
loopback and the client impose; what ``meterplane serve`` adds is the difference.
Run: ``python bench/_bare_http.py PORT``.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import uvloop

BODY = b'{"customerId":"acme","featureId":"api-calls","isGranted":true' + b" " * 330 + b"}"
RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
    len(BODY),
    BODY,
)


class Bare(asyncio.Protocol):
    """Counts complete request heads in what arrives and answers each."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport  # uvloop's transport, an asyncio.Transport in all but name
        self.pending = b""

    def data_received(self, data: bytes) -> None:
        self.pending += data
        heads = self.pending.split(b"\r\n\r\n")
        self.pending = heads.pop()
        if heads:
            self.transport.write(RESPONSE * len(heads))


async def _serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Bare, "127.0.0.1", port)
    print("ready", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(_serve(int(sys.argv[1])))
