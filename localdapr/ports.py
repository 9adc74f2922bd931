"""Free TCP ports that nobody else is handed before they are bound.

Binding port 0, reading the number and closing the socket (the usual `free_port()`) races twice: the
kernel hands ports from its ephemeral range to every outgoing connection too, so an HTTP client's
source port can take the number before the server binds it; and two callers (in one process, or two
processes started side by side) can be told the same number. Both showed up as rare test failures
("app not ready": a sidecar spoke HTTP/2 to another app's port).

So ports come from below the kernel's ephemeral range (never used as a source port), each one is
reserved by an exclusive POSIX record lock on the byte at its number in one shared file (released by
the kernel when the process dies, so other processes on this machine skip it until then), and a port
is handed out only if it can be bound right now. One file descriptor holds every reservation of a
process: a descriptor per port would push a long test run past the 1,024 descriptors that
`select()`-based clients (paho-mqtt) can watch.
"""

from __future__ import annotations

import fcntl
import os
import random
import socket
import tempfile
import threading
from pathlib import Path
from typing import Final

_LOCK_FILE: Final = Path(tempfile.gettempdir()) / "localdapr-ports.lock"
_FALLBACK_EPHEMERAL: Final = (32768, 60999)
_LOWEST: Final = 10000

_lock = threading.Lock()
_held: set[int] = set()  # ports this process reserved
# The one descriptor of the lock file, opened on first use and never closed: closing any descriptor of
# the file would drop every record lock this process holds on it (POSIX semantics).
_fd: int | None = None


def ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return _FALLBACK_EPHEMERAL


def candidate_range() -> range:
    """The ports handed out: below the ephemeral range, or above it when there is no room below."""
    low, high = ephemeral_range()
    if low - _LOWEST >= 2000:
        return range(_LOWEST, low)
    return range(high + 1, 65536)


def _bindable(port: int, host: str) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _lock_fd() -> int:
    global _fd
    if _fd is None:
        _fd = os.open(_LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    return _fd


def _reserve(port: int) -> bool:
    try:
        fcntl.lockf(_lock_fd(), fcntl.LOCK_EX | fcntl.LOCK_NB, 1, port)
    except OSError:
        return False
    _held.add(port)
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port no other caller of this function (in any process) holds, and that can be bound now."""
    ports = candidate_range()
    with _lock:
        start = random.randrange(len(ports))
        for i in range(len(ports)):
            port = ports[(start + i) % len(ports)]
            if port in _held or not _reserve(port):
                continue
            if _bindable(port, host):
                return port
            release_port(port)
    raise RuntimeError(f"no free TCP port in {ports.start}-{ports.stop - 1}")


def release_port(port: int) -> None:
    """Give a reserved port back (optional: reservations end with the process anyway)."""
    if port in _held:
        _held.discard(port)
        fcntl.lockf(_lock_fd(), fcntl.LOCK_UN, 1, port)
