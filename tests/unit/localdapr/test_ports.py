"""free_port: never the same port twice, never from the ephemeral range, reserved across processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from localdapr.ports import candidate_range, ephemeral_range, free_port


def test_ports_are_distinct_and_outside_the_ephemeral_range() -> None:
    low, high = ephemeral_range()
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    assert all(not low <= p <= high for p in ports)
    assert all(p in candidate_range() for p in ports)


def test_another_process_never_gets_a_port_this_one_holds() -> None:
    mine = {free_port() for _ in range(300)}
    # Drawn at random from ~22k ports, 3,000 would meet 300 about 40 times without the reservation.
    code = "import json; from localdapr.ports import free_port as f; "
    code += "print(json.dumps([f() for _ in range(3000)]))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    theirs = set(json.loads(out.stdout))
    assert len(theirs) == 3000
    assert not mine & theirs


def test_reservations_share_one_file_descriptor() -> None:
    """A descriptor per port once pushed a long test run past select()'s 1,024 (paho-mqtt stalled)."""
    free_port()  # the lock file is open from here on
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(300):
        free_port()
    assert len(os.listdir("/proc/self/fd")) <= before
