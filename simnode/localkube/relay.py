"""A TCP relay from inside a network namespace to servers on the host's loopback.

A real node's kubelet runs in a network namespace of its own (its node address
lives there, so the API server reaches it by address and the machine's own
interfaces are never used). The API server listens on the host's 127.0.0.1
only. This relay, started in the host's namespace, opens its listening socket
inside the node's namespace on 127.0.0.1 and the same port (a socket stays in
the namespace it was created in), and forwards each connection to the host's
127.0.0.1. The kubelet's kubeconfig then names ``https://127.0.0.1:<port>``,
which the API server's certificate already covers. containerd's streaming
server (``kubectl exec``, ``attach``, ``port-forward``: the kubelet dials the
URL containerd hands it, on 127.0.0.1) is relayed the same way.

Run as ``python -m localkube.relay --netns /run/netns/NAME --port PORT [--port PORT...]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import os
import signal
import socket
from collections.abc import Awaitable, Callable

CLONE_NEWNET = 0x40000000
CHUNK = 1 << 16


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def listen_in(netns: str, port: int) -> socket.socket:
    """A listening socket on 127.0.0.1:``port`` inside the namespace at ``netns``."""
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(netns, os.O_RDONLY)
    try:
        _setns(target)
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))
            sock.listen(128)
            sock.setblocking(False)
        finally:
            _setns(home)
    finally:
        os.close(home)
        os.close(target)
    return sock


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(ConnectionError, OSError):
            writer.close()


async def serve(netns: str, ports: list[int]) -> None:
    def handler(port: int) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter],
                                       Awaitable[None]]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                writer.close()
                return
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

        return handle

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    servers = [await asyncio.start_server(handler(port), sock=listen_in(netns, port))
               for port in ports]
    try:
        await stop.wait()
    finally:
        for server in servers:
            server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="localkube-relay", description=__doc__.splitlines()[0])
    parser.add_argument("--netns", required=True, help="path of the network namespace")
    parser.add_argument("--port", type=int, action="append", required=True,
                        help="a port to relay: listened on in the namespace's 127.0.0.1, "
                             "forwarded to the host's (repeatable)")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.netns, args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
