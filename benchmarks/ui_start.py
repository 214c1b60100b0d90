"""How fast ``kdbench ui`` starts and stops: seconds until it prints the addresses, seconds
from SIGTERM until it and its MLflow server are gone, and the CPU they used.

Run with ``python benchmarks/ui_start.py [TRACKING_URI]`` (default ``sqlite:///mlflow.db``,
which must hold a sweep: ``kdbench run`` writes one). ``kdbench ui`` runs as a user starts
it, on a free port; its CPU time is that of the command and of the server processes it
started and reaped (``wait4``'s resource usage).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time


def main(uri: str = "sqlite:///mlflow.db") -> None:
    start = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", "kdbench.cli", "ui", "--tracking-uri",
                                uri, "--port", "0"], stdout=subprocess.PIPE, text=True)
    for line in process.stdout:
        if "its latest leaderboard" in line or "no kdbench sweep" in line:
            break
    else:
        raise SystemExit(f"kdbench ui exited with {process.wait()} before printing addresses")
    up = time.monotonic() - start
    stop = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, status, usage = os.wait4(process.pid, 0)
    print(f"addresses printed after {up:.1f} s; gone {time.monotonic() - stop:.1f} s after "
          f"SIGTERM (exit {os.waitstatus_to_exitcode(status)}); CPU of kdbench ui and its "
          f"server: user {usage.ru_utime:.1f} s, system {usage.ru_stime:.1f} s")


if __name__ == "__main__":
    main(*sys.argv[1:])
