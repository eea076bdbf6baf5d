"""Ports for peers and subprocesses that must be told a port number before they bind it.

A port found by binding port 0 and letting go comes from the kernel's ephemeral range, where
any other test (on another pytest-xdist worker) binding port 0 may be handed it before our
peer binds it. So these come from below that range (32768 and up on Linux), from a block of
its own for each xdist worker, and are checked free for both TCP and UDP.
"""

from __future__ import annotations

import os
import random
import socket

__all__ = ["free_port"]

_FIRST = 20_000
_BLOCK = 1_000  # ports per worker: gw0 20000-20999, gw1 21000-21999, ...


def _bindable(port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


# Handed out by this process: a caller often asks for several ports before its peer binds any,
# and a port still free is not yet taken, so free_port must not hand it out twice.
_handed_out: set[int] = set()


def free_port() -> int:
    """A port free on 127.0.0.1 for TCP and UDP, outside the ephemeral range, in this worker's block.

    Never one this process was given before, until the block runs out and the cycle starts over.
    """
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or "0")
    low = _FIRST + _BLOCK * (worker % 12)
    block = range(low, low + _BLOCK)
    if _handed_out.issuperset(block):
        _handed_out.clear()
    for port in random.sample(block, _BLOCK):
        if port not in _handed_out and _bindable(port):
            _handed_out.add(port)
            return port
    raise RuntimeError(f"no free port in {low}-{low + _BLOCK - 1}")
