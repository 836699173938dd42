"""Run a command as a Linux child subreaper: orphans it leaves behind are reaped, not zombies.

slurmd double-forks one slurmstepd per job step; on a machine whose PID 1 never reaps (many
containers) each would stay a zombie after the job ends. Run the local cluster under this:

    python tests/slurm/subreaper.py tests/slurm/cluster.sh run DIR CMD...

SIGTERM/SIGINT are passed on to the command; the exit status is the command's.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time

PR_SET_CHILD_SUBREAPER = 36
LINGER_S = 10.0


def become_subreaper() -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):  # not Linux: nothing to reap, run the command plainly
        return False


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    become_subreaper()
    child = subprocess.Popen(argv)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda sig, _frame: child.send_signal(sig))
    status = None
    while status is None:
        try:
            pid, raw = os.wait()  # the command, or any orphan handed to us
        except ChildProcessError:
            break
        except InterruptedError:  # pragma: no cover - PEP 475 retries, kept for clarity
            continue
        if pid == child.pid:
            status = os.waitstatus_to_exitcode(raw)
    # orphans still finishing (a job step's last slurmstepd): reap them for a few seconds more
    deadline = time.monotonic() + LINGER_S
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            time.sleep(0.1)
    if status is None:
        status = child.returncode if child.returncode is not None else 1
    return 128 - status if status < 0 else status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
