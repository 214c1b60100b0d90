"""A real Ray head on 127.0.0.1 for the tests and benchmarks of the Ray executor."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from kdbench.ui import free_port


@contextlib.contextmanager
def ray_head(cpus: int) -> Iterator[str]:
    """``HOST:PORT`` of a Ray head with ``cpus`` CPUs on 127.0.0.1, started by ``ray start
    --head`` in a subprocess, whose workers import this kdbench; stopped on exit.

    Started with ``--block`` so that this process owns it: stopping it is a signal to that
    one process (``ray stop`` would stop every Ray on the machine)."""
    import ray

    port = free_port(0)
    temp = tempfile.mkdtemp(prefix="kdray")  # short: Ray's socket paths have a length limit
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
           "RAY_USAGE_STATS_ENABLED": "0"}
    head = subprocess.Popen(
        [str(Path(sys.executable).with_name("ray")), "start", "--head", "--block",
         f"--port={port}", "--node-ip-address=127.0.0.1", f"--num-cpus={cpus}", "--num-gpus=0",
         "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 60
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        if head.poll() is not None or time.monotonic() > deadline:
            head.kill()
            raise RuntimeError(f"ray start failed: {head.stderr.read().decode()[-2000:]}")
        time.sleep(0.2)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        ray.shutdown()
        os.killpg(head.pid, signal.SIGINT)  # --block: the head stops the processes it started
        try:
            # It does in 0.3 s, unless a worker was killed under it: then it hung for the
            # whole wait (30 s, measured), and its process group is killed instead.
            head.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        shutil.rmtree(temp, ignore_errors=True)
