"""Latency-injecting loopback proxies, one per service, in a process of their own:
`python -m benchmarks.latency DELAY_MS URL...` prints one line, the proxies' URLs as a JSON
list (in the order of the URLs given), then forwards until killed.

Each chunk a client sends is forwarded to the service `DELAY_MS` after it arrived (stamped on
arrival, so a request written in two pieces, headers then body, is delayed once, as one-way
latency would); the service's answers come back as they are. Every call through a proxy costs
one delay, the same for the minter, the Query Service and S3.
"""

from __future__ import annotations

import asyncio
import json
import sys
from urllib.parse import urlsplit

_CHUNK = 65536


async def _delayed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                   delay: float) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def receive() -> None:
        while data := await reader.read(_CHUNK):
            queue.put_nowait((loop.time(), data))
        queue.put_nowait((-1.0, b""))

    receiving = asyncio.create_task(receive())
    while (item := await queue.get())[0] >= 0:
        await asyncio.sleep(max(0.0, item[0] + delay - loop.time()))
        writer.write(item[1])
        await writer.drain()
    await receiving
    writer.close()


async def _plain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(_CHUNK):
        writer.write(data)
        await writer.drain()
    writer.close()


def _handler(host: str, port: int, delay: float) -> object:
    async def handle(client_reader: asyncio.StreamReader,
                     client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(host, port)
            await asyncio.gather(_delayed(client_reader, server_writer, delay),
                                 _plain(server_reader, client_writer))
        except OSError:
            client_writer.close()
    return handle


async def _serve(delay_ms: int, urls: list[str]) -> None:
    servers, proxied = [], []
    for url in urls:
        parts = urlsplit(url)
        server = await asyncio.start_server(
            _handler(parts.hostname or "127.0.0.1", parts.port or 80, delay_ms / 1000),  # type: ignore[arg-type]
            "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        proxied.append(parts._replace(netloc=f"127.0.0.1:{port}").geturl())
        servers.append(server)
    print(json.dumps(proxied), flush=True)
    await asyncio.gather(*(server.serve_forever() for server in servers))


def main() -> None:
    delay_ms, *urls = sys.argv[1:]
    asyncio.run(_serve(int(delay_ms), urls))


if __name__ == "__main__":
    main()
