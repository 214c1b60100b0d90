"""``kdbench ui``: MLflow's UI for a store, opened on a benchmark's runs.

Starts the real ``mlflow server`` on 127.0.0.1 for the store, quietly: one worker, MLflow's
job runner off (kdbench submits no jobs, and it is a second process to start), warnings
off, its log in a file that is shown only if it fails. Once it answers, prints the address
of the benchmark's runs table in model-training mode, with the row, role, method, seed and
final metrics as columns (:func:`kdbench.tracking.view_url`), and of its latest sweep's
run, which carries the leaderboard (:meth:`kdbench.tracking.Tracker.log_board`). A store
that is itself a server (``http://``) is already a UI: its addresses are printed and
nothing is started.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from kdbench import tracking
from kdbench.errors import KdbenchError

HOST = "127.0.0.1"
START_SECONDS = 180.0
"""How long the server may take to answer: an old store's schema upgrade runs first."""


@dataclass(frozen=True)
class Target:
    """What the UI opens on: an experiment and its latest sweep (the board's run)."""

    name: str
    experiment_id: str
    sweep_id: str | None
    board: str | None = None
    """The leaderboard page among the sweep's artifacts (``<benchmark>.html``)."""


def serve(uri: str | None, benchmark: str | None, port: int) -> int:
    """Start the UI for store ``uri`` (default: kdbench's), print where ``benchmark``'s
    runs are (default: the benchmark of the newest sweep in the store), and wait; stopping
    (Ctrl-C, SIGTERM) stops the server too."""
    uri = tracking.resolve_uri(uri)
    if uri.startswith(("http://", "https://")):
        target = find(uri, benchmark)
        _print_addresses(uri, uri, target)
        return 0
    database = tracking._sqlite_path(uri)
    if database is not None and not database.is_file():
        raise KdbenchError(f"no MLflow store at {database}: `kdbench run` creates it, or give "
                           "--tracking-uri / MLFLOW_TRACKING_URI")
    port = free_port(port)
    log = Path(tempfile.gettempdir()) / f"kdbench-ui-{port}.log"
    # The server boots while the store is read: the two take about as long.
    server = start(uri, port, log)
    try:
        target = find(uri, benchmark)
        wait_until_up(server, port, log)
        _print_addresses(uri, f"http://{HOST}:{port}", target, log)
        return server.wait()
    except KeyboardInterrupt as stop:
        print("kdbench: stopped the MLflow UI", file=sys.stderr)
        return int(getattr(stop, "exit_code", 130))
    finally:
        stop_server(server)


def free_port(port: int) -> int:
    """``port`` if nothing listens on it (0: any free port), else one clear line."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            raise KdbenchError(f"port {port} on {HOST} is in use (another `kdbench ui` or "
                               "`mlflow ui`?): pass --port N, or --port 0 for any free "
                               "port") from None
        return int(probe.getsockname()[1])


def start(uri: str, port: int, log: Path) -> subprocess.Popen:
    """``mlflow server`` for ``uri`` on ``port``, in its own process group, its output in
    ``log``."""
    # Telemetry would try the network on the way out, and delay every stop.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
           "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONWARNINGS": "ignore"}
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
               "--host", HOST, "--port", str(port), "--workers", "1",
               "--uvicorn-opts", "--log-level warning"]
    with log.open("wb") as out:
        return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)


def wait_until_up(server: subprocess.Popen, port: int, log: Path,
                  seconds: float = START_SECONDS) -> None:
    """Return once the server answers ``/health``; one clear line if it exits or hangs."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise KdbenchError(f"the MLflow server stopped at start (exit code "
                               f"{server.returncode}): {_last_line(log)} (log: {log})")
        with contextlib.suppress(OSError), \
                urllib.request.urlopen(f"http://{HOST}:{port}/health", timeout=2) as answer:
            if answer.status == 200:
                return
        time.sleep(0.25)
    raise KdbenchError(f"the MLflow server did not answer on port {port} within "
                       f"{seconds:.0f} s (log: {log})")


def stop_server(server: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (the CLI and its uvicorn worker), SIGKILL after
    10 s."""
    if server.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def find(uri: str, benchmark: str | None) -> Target | None:
    """The experiment of ``benchmark`` (a name, or a benchmark file whose ``name`` is read),
    else the one with the newest sweep; ``None`` for a store without sweeps. Tags an
    experiment from before these views for the model-training view and the runs view."""
    tracker = tracking.Tracker(uri)
    client = tracker.client
    if benchmark is not None:
        name = experiment_name(benchmark)
        found = client.get_experiment_by_name(name)
        if found is None or found.lifecycle_stage != "active":
            names = sorted(e.name for e in client.search_experiments() if e.name != "Default")
            raise KdbenchError(f"no experiment {name!r} in {uri}; it has: "
                               f"{', '.join(names) or 'none'} (`kdbench run {benchmark}` "
                               "creates it)")
        ids = [found.experiment_id]
    else:
        ids = [e.experiment_id for e in client.search_experiments()]
    sweeps = client.search_runs(ids, f"tags.`{tracking.TAG}role` = 'sweep' and "
                                "attributes.status = 'FINISHED'", max_results=1,
                                order_by=["attributes.start_time DESC"]) if ids else []
    if benchmark is None and not sweeps:
        return None
    experiment = client.get_experiment(sweeps[0].info.experiment_id if sweeps else ids[0])
    metric = sweeps[0].data.params.get("metric") if sweeps else None
    wanted = {tracking.KIND: tracking.TRAINING,
              **({tracking.VIEW + tracking.RUNS_VIEW: tracking.runs_view(metric)}
                 if metric else {})}
    for key, value in wanted.items():
        if key not in experiment.tags:
            client.set_experiment_tag(experiment.experiment_id, key, value)
    board = None
    if sweeps:
        pages = [a.path for a in client.list_artifacts(sweeps[0].info.run_id)
                 if a.path.endswith(".html")]
        board = pages[0] if pages else None
    return Target(experiment.name, experiment.experiment_id,
                  sweeps[0].info.run_id if sweeps else None, board)


def experiment_name(benchmark: str) -> str:
    """A benchmark's experiment: the ``name`` in its file, or the name as given (a built-in
    benchmark, or an experiment such as ``mnist1d-check-recipe``)."""
    path = Path(benchmark)
    if path.suffix == ".toml" and path.is_file():
        try:
            name = tomllib.loads(path.read_text()).get("name")
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise KdbenchError(f"{benchmark}: cannot read its name: {error}") from None
        if not isinstance(name, str):
            raise KdbenchError(f"{benchmark} has no `name`")
        return name
    return benchmark


def _print_addresses(uri: str, base: str, target: Target | None, log: Path | None = None
                     ) -> None:
    stops = f" (Ctrl-C stops it; server log {log})" if log else ""
    print(f"MLflow UI for {uri} on {base}{stops}")
    if target is None:
        print("  no kdbench sweep in this store yet: `kdbench run` writes one")
        return
    print(f"  runs of {target.name}: {tracking.view_url(base, target.experiment_id)}")
    if target.sweep_id:
        print(f"  its latest leaderboard: "
              f"{tracking.view_url(base, target.experiment_id, target.sweep_id, target.board)}")
    sys.stdout.flush()


def _last_line(log: Path) -> str:
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no output"
    return lines[-1][:300] if lines else "no output"
