"""One tunnel's listening sockets served as one: the default address has two (127.0.0.1 and ::1).

asyncio.start_server takes one ready socket; `Listeners` starts a server per socket and closes
them together, so the forwarder holds one thing whatever the number of sockets.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Sequence

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Listeners:
    """asyncio servers on already bound sockets, closed and awaited together."""

    def __init__(self, servers: Sequence[asyncio.Server]) -> None:
        self.servers = tuple(servers)

    @classmethod
    async def serve(cls, socks: Sequence[socket.socket], handler: Handler, limit: int) -> Listeners:
        servers: list[asyncio.Server] = []
        try:
            for sock in socks:
                servers.append(await asyncio.start_server(handler, sock=sock, limit=limit))
        except BaseException:
            for server in servers:
                server.close()
            for sock in socks[len(servers):]:
                sock.close()  # not yet handed to a server, so nobody else closes it
            raise
        return cls(servers)

    def close(self) -> None:
        for server in self.servers:
            server.close()

    async def wait_closed(self) -> None:
        await asyncio.gather(*(server.wait_closed() for server in self.servers))

    def is_serving(self) -> bool:
        return any(server.is_serving() for server in self.servers)
