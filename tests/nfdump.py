"""The reference flow collector: the same datagrams sent to Debian's nfcapd, read back with nfdump."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass

from tests.ports import free_port

__all__ = ["NfdumpFlow", "nfdump_flows"]

_FORMAT = "fmt:%sa,%da,%sp,%dp,%pr,%pkt,%byt"


@dataclass(frozen=True, slots=True)
class NfdumpFlow:
    src: str
    dst: str
    sport: int
    dport: str  # ICMP shows as "type.code"
    proto: str
    packets: int
    bytes: int


def nfdump_flows(datagrams: list[bytes], timeout_s: float = 15.0) -> list[NfdumpFlow]:
    """What nfcapd stores for `datagrams` (sent from 127.0.0.1), as nfdump prints it."""
    if shutil.which("nfcapd") is None or shutil.which("nfdump") is None:
        raise FileNotFoundError("nfdump is not installed (apt-get install nfdump)")
    with tempfile.TemporaryDirectory(prefix="nfcapd") as store:
        port = free_port()
        command = ["timeout", "-k", "2", "-s", "TERM", str(timeout_s), "nfcapd", "-b", "127.0.0.1", "-p", str(port),
                   "-w", store, "-t", "60"]  # fmt: skip
        nfcapd = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 5
            # nfcapd has bound its port once a second bind of it fails.
            while time.monotonic() < deadline:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                    try:
                        probe.bind(("127.0.0.1", port))
                    except OSError:
                        break
                time.sleep(0.05)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
                for datagram in datagrams:
                    sender.sendto(datagram, ("127.0.0.1", port))
            time.sleep(0.3)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(nfcapd.pid, signal.SIGTERM)
            nfcapd.communicate(timeout=10)
        output = subprocess.run(
            ["nfdump", "-R", store, "-q", "-o", _FORMAT], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    flows = []
    for line in output.splitlines():
        if not line.strip():
            continue
        src, dst, sport, dport, proto, packets, nbytes = (part.strip() for part in line.split(","))
        flows.append(NfdumpFlow(src, dst, int(sport), dport, proto, int(packets), int(nbytes)))
    return flows
