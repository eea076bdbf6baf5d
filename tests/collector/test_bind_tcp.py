"""The listening sockets Vigil binds for its HTTP and gRPC servers."""

from __future__ import annotations

import asyncio
import socket

from vigil.collector.collector import bind_tcp


def test_connections_accepted_on_a_bound_socket_send_without_nagle_delay() -> None:
    # Without TCP_NODELAY a kept-alive HTTP response waits for the client's delayed ACK (~40 ms).
    async def accepted_nodelay() -> int:
        listener = bind_tcp("127.0.0.1", 0, listen=True, reuseport=False)
        port = listener.getsockname()[1]
        options: list[int] = []

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            options.append(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(on_connect, sock=listener)
        async with server:
            _, client = await asyncio.open_connection("127.0.0.1", port)
            for _ in range(100):  # bounded: the handler runs within a few loop turns
                if options:
                    break
                await asyncio.sleep(0.01)
            client.close()
        return options[0]

    assert asyncio.run(accepted_nodelay()) == 1
