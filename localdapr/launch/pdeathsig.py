"""`python -I pdeathsig.py PARENT_PID COMMAND...`: become COMMAND, killed when PARENT_PID dies (Linux).

The launcher starts every app through this: it sets the parent-death signal (prctl PR_SET_PDEATHSIG,
which survives exec) to SIGKILL and execs COMMAND in its own place, so the app keeps this pid and dies
with the launcher even when the launcher is SIGKILLed and cannot stop it.

A separate program rather than a `preexec_fn`, which would make subprocess fork() the whole
multi-threaded launcher (gRPC's threads included, with a gRPC log line for every app) and run Python
in the copy before exec; this way the launcher keeps spawning with vfork. Run it with `-I`: it imports
only the standard library, so neither the app's PYTHONPATH nor this folder can shadow a module.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def main(argv: list[str]) -> int:
    parent, command = int(argv[0]), argv[1:]
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    if prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
        # A sandbox without prctl: the app runs anyway, as it did before the launcher used this.
        reason = os.strerror(ctypes.get_errno())
        sys.stderr.write(
            f"localdapr: prctl(PR_SET_PDEATHSIG): {reason}; the app can outlive a killed launcher\n"
        )
    elif os.getppid() != parent:
        return 1  # the parent died before prctl, so the signal will never come: do not start at all
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        sys.stderr.write(f"localdapr: cannot run {command[0]}: {exc.strerror}\n")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
