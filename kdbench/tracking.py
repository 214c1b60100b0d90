"""MLflow: the only writer of results, and where the leaderboard reads them back.

One experiment per benchmark (its description, the benchmark file's, is the
experiment's note); one parent run per sweep; one child run per
(role, method, params, seed) with flat params, per-epoch metrics and the tags
``kdbench.role``, ``kdbench.label``, ``kdbench.method``, ``kdbench.seed``,
``kdbench.fingerprint``, ``kdbench.spec_fingerprint`` (the same without the code) and
``kdbench.code.<part>`` (``"<distribution> <version> <source hash>"`` of the method,
student, dataset, teacher, metrics and kdbench's training loop). Per-epoch metrics are
the loss terms and ``val.<metric>`` (the validation split); the final ones, at the last
step, are the test metrics under their plain names, ``train.<metric>``, ``epoch`` (the
reported one), ``val.gain`` and ``reported.val.<metric>`` (the validation values at the
reported epoch, which under ``epoch = "best"`` differ from the curve's last point). A
child run's start and end are those of its training in the worker, not of its logging; its
artifacts are a trained teacher's checkpoint and the files a run returns in
:attr:`~kdbench.runs.RunResult.artifacts` (a data-free method's impressions). A run whose
fingerprint already FINISHED is reused. Only the driver process writes (SQLite has
one writer).

**Units.** The values of the benchmark's metrics (``top1``, ``val.top1``, ``val.gain``...)
are logged in the leaderboard's unit, percent (tag ``kdbench.unit = percent``), so that the
UI reads like the board; the exact fractions the runs produced are logged beside them as
``fraction.<key>`` and are what kdbench reads back. Runs logged before carry fractions under
the plain names and no ``fraction.`` keys; both read back the same.

**The UI.** Each experiment is tagged for MLflow's model-training view
(``mlflow.experimentKind``) and carries a shared view, :data:`RUNS_VIEW`, that lists the
runs of every sweep with their row, role, method, seed and final metrics as columns
(:func:`view_url`). Each sweep's parent run carries its leaderboard (:meth:`Tracker.log_board`):
per row the mean, Δ and its interval, p and rank as metrics, the verdict as a tag, the
table as a logged MLflow table, and the terminal's table as the run's description.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import math
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kdbench import cachefile, interrupts
from kdbench.errors import TrackingError
from kdbench.runs import Run, RunResult
from kdbench.spec import Spec

DEFAULT_URI = "sqlite:///mlflow.db"
REPORTED = "reported."
"""Prefix of a final value whose key the history also logs per epoch (``val.top1``)."""
TAG = "kdbench."
NOTE = "mlflow.note.content"
CHECKSUM = TAG + "checkpoint_sha256"
"""The SHA-256 of a teacher run's checkpoint: the cached file must match it to be used."""
OWNER = TAG + "owner"
"""``host:pid`` of the driver that writes a run: a RUNNING run whose driver is gone was
killed (SIGKILL, a second Ctrl-C) and is marked KILLED by the next sweep on that host."""
UNIT = TAG + "unit"
FRACTION = "fraction."
"""Prefix of the exact fraction a run produced, beside its value in percent."""
KIND = "mlflow.experimentKind"
"""The experiment tag by which MLflow's UI picks its view: model training, not GenAI."""
TRAINING = "custom_model_development"
VIEW = "mlflow.sharedViewState."
"""Prefix of an experiment tag holding a view of its runs table (filter, sort, columns)
that a URL opens with ``viewStateShareKey``."""
RUNS_VIEW = "kdbench-runs"
BOARD_TABLE = "leaderboard-table.json"


def owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _whole(write: Any) -> Any:
    """A write to the store that a stop signal does not cut in half (:func:`interrupts.deferred`)."""
    @functools.wraps(write)
    def whole(*args: Any, **kwargs: Any) -> Any:
        with interrupts.deferred():
            return write(*args, **kwargs)
    return whole


def resolve_uri(uri: str | None) -> str:
    """``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


class Tracker:
    """A connection to the tracking store for one benchmark."""

    def __init__(self, uri: str | None = None) -> None:
        self.uri = resolve_uri(uri)
        # Fail fast on an unreachable server instead of MLflow's minutes of retries.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        from mlflow import MlflowClient

        # MLflow sets its loggers up on import; its INFO lines would bury the progress display.
        for name in ("mlflow", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)
        # It logs each failed SQL statement with a traceback; kdbench retries and reports it.
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)

        database = _sqlite_path(self.uri)
        if database is not None:
            _check_sqlite(self.uri, database)
        try:
            # A new SQLite file gets its schema on first use: one process at a time, or two
            # sweeps started together both run MLflow's migrations ("duplicate column").
            with _schema_lock(database):
                self.client = MlflowClient(tracking_uri=self.uri)
                self.client.search_experiments(max_results=1)
        except Exception as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            fix = ("check the file" if database is not None else "start the server")
            raise TrackingError(
                f"cannot use tracking store {self.uri}: {first[:300]}; {fix}, fix "
                f"--tracking-uri / MLFLOW_TRACKING_URI, or use the default {DEFAULT_URI}"
            ) from None

    # Experiments and sweeps -----------------------------------------------------

    def experiment(self, spec: Spec, create: bool = True) -> str | None:
        """The id of the benchmark's experiment (created on first use)."""
        found = self.client.get_experiment_by_name(spec.name)
        if found is None and not create:
            return None
        if found is None:
            try:
                experiment_id = self.client.create_experiment(spec.name)
            except Exception:
                # Another sweep created it between the lookup and here.
                found = self.client.get_experiment_by_name(spec.name)
                if found is None:
                    raise
                experiment_id = found.experiment_id
        else:
            experiment_id = found.experiment_id
            if found.lifecycle_stage == "deleted":
                self.client.restore_experiment(experiment_id)
        if create:
            tags = {KIND: TRAINING, VIEW + RUNS_VIEW: runs_view(spec.metric),
                    # MLflow shows this tag as the experiment's description.
                    **({NOTE: spec.description} if spec.description else {})}
            held = found.tags if found is not None else {}
            for key, value in tags.items():
                if held.get(key) != value:
                    self._tag_experiment(experiment_id, key, value)
        return experiment_id

    def _tag_experiment(self, experiment_id: str, key: str, value: str) -> None:
        try:
            self.client.set_experiment_tag(experiment_id, key, value)
        except Exception:
            # Sweeps started together on a tracking server can both find the tag missing and
            # both insert it: MLflow's SQL store checks, then inserts, and the second insert
            # fails ("UNIQUE constraint failed: experiment_tags.key"; seen in the test of
            # three sweeps on one server). The tag exists now, so setting it again updates it.
            self.client.set_experiment_tag(experiment_id, key, value)

    def finished_sweeps(self, experiment_id: str) -> list[dict[str, str]]:
        """The params of every FINISHED sweep (parent run) of ``experiment_id``, newest
        first."""
        runs = _retry(self.client.search_runs, [experiment_id],
                      filter_string=f"tags.`{TAG}role` = 'sweep' and "
                      "attributes.status = 'FINISHED'",
                      max_results=1000, order_by=["attributes.start_time DESC"])
        return [dict(r.data.params) for r in runs]

    @_whole
    def log_board(self, sweep_id: str, board: dict[str, Any]) -> None:
        """The leaderboard on its sweep's run, for the UI: per row ``<row>.mean``, ``.std``,
        ``.delta``, ``.delta_lo``, ``.delta_hi``, ``.p_holm``, ``.rank`` (the board's units)
        and the tag ``kdbench.verdict.<row>``; the terminal's table as the MLflow table
        :data:`BOARD_TABLE`; the board in markdown (its lines, table and notes) as the run's
        description."""
        from mlflow.entities import Metric, RunTag

        from kdbench import leaderboard

        metrics: dict[str, float | None] = {
            "teacher.mean": board["teacher"]["value"], "baseline.mean": board["baseline"]["mean"],
            "baseline.std": board["baseline"]["std"], "baseline.train": board["baseline"]["train"]}
        tags = {UNIT: board.get("unit", "percent")}
        for rank, row in enumerate(board["rows"], 1):
            key = metric_key(row["method"])
            lo, hi = row.get("delta_ci95") or (None, None)
            values = {"mean": row["mean"], "std": row["std"], "delta": row.get("delta"),
                      "delta_lo": lo, "delta_hi": hi, "p_holm": row.get("p_holm"),
                      "rank": float(rank)}
            metrics.update({f"{key}.{k}": v for k, v in values.items()})
            tags[f"{TAG}verdict.{key}"] = row.get("verdict") or "–"
        tags[NOTE] = _within(leaderboard.markdown(board, statistics=False), NOTE_LIMIT)
        now = int(time.time() * 1000)
        _retry(self.client.log_batch, sweep_id,
               metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()
                        if v is not None],
               tags=[RunTag(k, v) for k, v in tags.items()])
        header, lines = leaderboard.compact(board)  # the terminal's table, cell for cell
        _retry(self.client.log_table, sweep_id, {h: [line[i] for line in lines]
                                                 for i, h in enumerate(header)}, BOARD_TABLE)

    @_whole
    def start_sweep(self, experiment_id: str, spec: Spec, options: dict[str, Any]) -> str:
        self.close_abandoned(experiment_id)
        run = self.client.create_run(experiment_id, run_name=f"sweep {spec.name}",
                                     tags={TAG + "role": "sweep", TAG + "benchmark": spec.name,
                                           OWNER: owner()})
        from mlflow.entities import Param

        params = {"benchmark": str(spec.path), "seeds": ",".join(map(str, spec.seeds)),
                  "methods": ",".join(m.label for m in spec.methods), "metric": spec.metric,
                  **{k: str(v) for k, v in options.items()}}
        self.client.log_batch(run.info.run_id,
                              params=[Param(k, str(v)[:6000]) for k, v in params.items()])
        return run.info.run_id

    @_whole
    def end_sweep(self, sweep_id: str, status: str = "FINISHED") -> None:
        """End the sweep's run; a sweep that stops (KILLED, FAILED) on a store that cannot be
        written stays RUNNING, and the next sweep on this host marks it KILLED."""
        try:
            _retry(self.client.set_terminated, sweep_id, status)
        except Exception:
            if status == "FINISHED":
                raise

    def close_abandoned(self, experiment_id: str) -> int:
        """Mark KILLED the RUNNING runs of ``experiment_id`` whose driver on this host is gone
        (killed with SIGKILL or a second Ctrl-C); how many."""
        host = socket.gethostname()
        closed = 0
        for run in self.client.search_runs([experiment_id], "attributes.status = 'RUNNING'",
                                           max_results=5000):
            holder = run.data.tags.get(OWNER, "")
            where, _, pid = holder.rpartition(":")
            if where == host and pid.isdigit() and not _alive(int(pid)):
                self.client.set_terminated(run.info.run_id, "KILLED")
                closed += 1
        return closed

    # Runs that group others (``kdbench tune``: a row's tuning, a trial) -------------

    @_whole
    def start_group(self, experiment_id: str, name: str, tags: dict[str, str],
                    params: dict[str, Any] | None = None, parent: str | None = None) -> str:
        """A RUNNING run named ``name`` (nested under ``parent``) that other runs nest under;
        :meth:`end_sweep` ends it."""
        from mlflow.entities import Param

        tags = {**tags, **({"mlflow.parentRunId": parent} if parent else {})}
        run_id = self.client.create_run(experiment_id, run_name=name, tags=tags).info.run_id
        if params:
            self.client.log_batch(run_id, params=[Param(k, str(v)[:6000])
                                                  for k, v in params.items()])
        return run_id

    def reopen(self, run_id: str, experiment_id: str) -> bool:
        """Mark a run of ``experiment_id`` RUNNING again (a resumed tuning); ``False`` when
        this store has no such run."""
        try:
            run = self.client.get_run(run_id)
        except Exception:
            return False
        if run.info.experiment_id != experiment_id or run.info.lifecycle_stage == "deleted":
            return False
        self.client.update_run(run_id, status="RUNNING")
        return True

    @_whole
    def log_values(self, run_id: str, metrics: dict[str, float],
                   params: dict[str, Any] | None = None) -> None:
        """Final metrics (step 0) and params of a run; a param logged again must keep its
        value (MLflow's rule)."""
        from mlflow.entities import Metric, Param

        self.client.log_batch(
            run_id, metrics=[Metric(k, float(v), 0, 0) for k, v in metrics.items()],
            params=[Param(k, str(v)[:6000]) for k, v in (params or {}).items()])

    @_whole
    def log_artifact(self, run_id: str, path: Path) -> None:
        self.client.log_artifact(run_id, str(path))

    # Runs -----------------------------------------------------------------------

    @_whole
    def log(self, experiment_id: str, sweep_id: str | None, run: Run, result: RunResult) -> str:
        """Write one run with its params, per-epoch metrics, tags and status; a store that
        stays unwritable (a full disk, a lock another program holds) raises
        :class:`TrackingError` after the run it had begun is marked KILLED, never left
        RUNNING, so that the next sweep trains it again."""
        try:
            return self._log(experiment_id, sweep_id, run, result)
        except Exception as error:
            raise TrackingError(
                f"cannot write {run.describe()} to tracking store {self.uri}: "
                f"{_first_line(error)}; the runs written before are kept: free disk space or "
                "the lock on the store, then run the same command again to train what is "
                "missing") from None

    def _log(self, experiment_id: str, sweep_id: str | None, run: Run, result: RunResult) -> str:
        tags = {
            UNIT: "percent",
            TAG + "role": run.role, TAG + "label": run.label, TAG + "method": run.method or "",
            TAG + "seed": str(run.seed), TAG + "fingerprint": run.fingerprint,
            TAG + "seconds": f"{result.seconds:.2f}",
            TAG + "student_parameters": str(result.student_parameters), OWNER: owner(),
        }
        if run.job.protocol.smoke:
            tags[TAG + "smoke"] = f"{run.job.protocol.smoke} batches per epoch; not a result"
        if run.spec_fingerprint:
            tags[TAG + "spec_fingerprint"] = run.spec_fingerprint
        tags.update({f"{TAG}code.{part}": code for part, code in run.code.items()})
        if sweep_id:
            tags["mlflow.parentRunId"] = sweep_id
        if result.error:
            tags[TAG + "error"] = result.error[:5000]
        if result.source:
            tags[TAG + "copied_from"] = result.source
        if result.checkpoint:
            tags[CHECKSUM] = cachefile.digest(Path(result.checkpoint))
        created = _retry(self.client.create_run, experiment_id,
                         run_name=f"{run.label} seed {run.seed}", tags=tags,
                         start_time=_ms(result.started))
        run_id = created.info.run_id
        try:
            self._fill(run_id, run, result)
        except BaseException:
            with contextlib.suppress(Exception):
                self.client.set_terminated(run_id, "KILLED")
            raise
        result.run_id = run_id
        return run_id

    def _fill(self, run_id: str, run: Run, result: RunResult) -> None:
        """Log ``result`` into the run ``run_id`` just created, and end it."""
        from mlflow.entities import Metric, Param

        job = run.job
        params = {
            "row": run.label, "role": run.role, "seed": run.seed, "method": run.method or "",
            "dataset": job.dataset.name, "model": job.model.name if job.model else "",
            **{f"dataset.{k}": v for k, v in job.dataset.params.items()},
            **({f"model.{k}": v for k, v in job.model.params.items()} if job.model else {}),
            **{f"recipe.{k}": v for k, v in job.recipe.__dict__.items()},
            **{f"protocol.{k}": v for k, v in job.protocol.__dict__.items()},
            "evaluate_test": job.evaluate_test,
            **{f"method.{k}": v for k, v in run.params.items()},
            "teacher": job.teacher.fingerprint if job.teacher else "",
            "device": job.device,
        }
        percent = functools.partial(in_percent, metrics=job.metrics)
        metrics = []
        for row in result.history:
            prefix = "" if row["phase"] == "train" else f"{row['phase']}."
            for key, value in row.items():
                if key not in ("phase", "epoch") and isinstance(value, int | float):
                    metrics.append(Metric(prefix + key, _shown(float(value), percent(key)), 0,
                                          int(row["epoch"])))
        # The final values, under their plain names, are what the leaderboard reads. A key
        # the history also has per epoch (val.top1) holds the last epoch's value there, which
        # under the "best" epoch rule is not the reported one: that goes under reported.<key>.
        last = max((int(r["epoch"]) for r in result.history if r["phase"] == "train"), default=0)
        curves = {m.key for m in metrics}
        for k, v in result.metrics.items():
            name = REPORTED + k if k in curves else k
            metrics.append(Metric(name, _shown(float(v), percent(k)), 0, last))
            if percent(k):
                metrics.append(Metric(FRACTION + name, float(v), 0, last))
        metrics.append(Metric("seconds", result.seconds, 0, 0))
        param_list = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, max(len(metrics), len(param_list)), 500):
            _retry(self.client.log_batch, run_id, metrics=metrics[i:i + 500],
                   params=param_list[i:i + 500] if i < len(param_list) else [])
        if result.checkpoint:
            _retry(self.client.log_artifact, run_id, result.checkpoint)
        self._log_files(run_id, result.artifacts)
        _retry(self.client.set_terminated, run_id,
               "FINISHED" if result.status == "finished" else "FAILED", end_time=_ms(result.ended))

    def _log_files(self, run_id: str, files: dict[str, bytes]) -> None:
        """Log a result's in-memory artifacts (name -> bytes) under their names."""
        if not files:
            return
        with tempfile.TemporaryDirectory() as tmp:
            for name, content in files.items():
                path = Path(tmp) / Path(name).name
                path.write_bytes(content)
                _retry(self.client.log_artifact, run_id, str(path))

    def finished(self, experiment_id: str | None, fingerprints: set[str],
                 metrics: tuple[str, ...]) -> dict[str, RunResult]:
        """The latest FINISHED run for each fingerprint that has one, as results."""
        try:
            return self._finished(experiment_id, fingerprints, metrics)
        except Exception as error:
            raise TrackingError(
                f"cannot read tracking store {self.uri}: {_first_line(error)}; the runs "
                "written before are kept: free the lock on the store or restart its server, "
                "then run the same command again to train what is missing") from None

    def _finished(self, experiment_id: str | None, fingerprints: set[str],
                  metrics: tuple[str, ...]) -> dict[str, RunResult]:
        found: dict[str, RunResult] = {}
        for r in self._finished_runs(experiment_id):
            fp = r.data.tags.get(TAG + "fingerprint")
            if fp in fingerprints and fp not in found:
                found[fp] = RunResult(
                    fp, "finished", _final(r.data.metrics, metrics,
                                           r.data.tags.get(UNIT) == "percent"), [],
                    float(r.data.metrics.get("seconds", 0.0)),
                    int(r.data.tags.get(TAG + "student_parameters", 0) or 0), None,
                    run_id=r.info.run_id, reused=True)
        return found

    def _finished_runs(self, experiment_id: str | None) -> Iterator[Any]:
        """Every FINISHED run of the experiment, newest first, page by page."""
        if experiment_id is None:
            return
        token = None
        while True:
            page = _retry(
                self.client.search_runs, [experiment_id], filter_string="attributes.status = 'FINISHED'",
                max_results=5000, order_by=["attributes.start_time DESC"], page_token=token)
            yield from page
            token = page.token
            if not token:
                return

    def previous_code(self, experiment_id: str | None, spec_fingerprints: set[str]
                      ) -> dict[str, dict[str, str]]:
        """The code tags (by part) of the latest FINISHED run of each spec fingerprint: what
        the code was when runs with the same inputs last finished."""
        found: dict[str, dict[str, str]] = {}
        if not spec_fingerprints:
            return found
        prefix = TAG + "code."
        for r in self._finished_runs(experiment_id):
            spec_fp = r.data.tags.get(TAG + "spec_fingerprint")
            if spec_fp in spec_fingerprints and spec_fp not in found:
                found[spec_fp] = {k[len(prefix):]: v for k, v in r.data.tags.items()
                                  if k.startswith(prefix)}
        return found

    def verified_checkpoint(self, run_id: str | None, path: Path) -> bool:
        """Whether the teacher checkpoint at ``path`` is the one run ``run_id`` logged: the
        cached file when its SHA-256 matches the run's, else the run's artifact downloaded
        over it (said in one line); ``False`` when neither is there (the teacher retrains)."""
        expected = None
        if run_id:
            with contextlib.suppress(Exception):
                expected = self.client.get_run(run_id).data.tags.get(CHECKSUM)
        if cachefile.intact(path, expected):
            return True
        why = "does not match its checksum" if path.is_file() else "is missing"
        restored = run_id is not None and self._restore(run_id, path, expected)
        print(f"kdbench: teacher checkpoint {path} {why}; "
              + (f"restored it from MLflow run {run_id}" if restored
                 else "MLflow has no good copy, so the teacher retrains"), file=sys.stderr)
        return restored

    def _restore(self, run_id: str, destination: Path, expected: str | None) -> bool:
        """Download run ``run_id``'s checkpoint artifact to ``destination`` if it matches
        ``expected``."""
        try:
            with tempfile.TemporaryDirectory() as tmp:
                got = Path(self.client.download_artifacts(run_id, destination.name, tmp))
                if expected is not None and cachefile.digest(got) != expected:
                    return False
                cachefile.write(destination, lambda t: shutil.copyfile(got, t))
            return True
        except Exception:
            return False


RETRY_SECONDS = 10.0
"""How long a write waits out a store that is busy (SQLite locked by another writer, a
server restarting) before the sweep stops."""
TRANSIENT = ("database is locked", "connection", "timed out", "temporarily unavailable", "503")


def _retry(call: Any, *args: Any, **kwargs: Any) -> Any:
    """``call(*args, **kwargs)``, again after a transient store error, for up to
    :data:`RETRY_SECONDS`."""
    deadline = time.monotonic() + RETRY_SECONDS
    delay = 0.2
    while True:
        try:
            return call(*args, **kwargs)
        except Exception as error:
            transient = any(t in str(error).lower() for t in TRANSIENT)
            if not transient or time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(2 * delay, 2.0)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:300]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI; ``None`` for other stores and in-memory."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///"):].split("?")[0]
    return Path(path) if path and path != ":memory:" else None


def _check_sqlite(uri: str, path: Path) -> None:
    """Refuse, in one line, a SQLite file that cannot be created or written: MLflow would
    otherwise retry for minutes."""
    folder = path.parent if str(path.parent) else Path(".")
    problem = None
    if path.is_dir():
        problem = "it is a directory"
    elif not folder.is_dir():
        problem = f"the directory {folder} does not exist"
    elif path.exists() and not os.access(path, os.R_OK | os.W_OK):
        problem = "the file is not readable and writable"
    elif not os.access(folder, os.W_OK | os.X_OK):
        problem = f"the directory {folder} is not writable (SQLite writes its journal there)"
    if problem:
        raise TrackingError(f"cannot use tracking store {uri}: {problem}; give a writable "
                            f"path in --tracking-uri / MLFLOW_TRACKING_URI, e.g. {DEFAULT_URI}")


def _schema_lock(database: Path | None) -> Any:
    """An inter-process lock for creating ``database``'s schema (none for other stores)."""
    if database is None:
        return contextlib.nullcontext()
    from filelock import FileLock

    key = hashlib.sha256(str(database.resolve()).encode()).hexdigest()[:16]
    return FileLock(Path(tempfile.gettempdir()) / f"kdbench-schema-{key}.lock", timeout=300)


def _final(logged: dict[str, float], metrics: tuple[str, ...], percent: bool = False
           ) -> dict[str, float]:
    """A finished run's final metrics as :class:`RunResult` holds them (fractions): the test
    metrics, their ``val.`` and ``train.`` values at the reported epoch, ``epoch`` and
    ``val.gain``. ``percent``: the run logged its metrics in percent (with the exact
    fractions under ``fraction.``); else it is an older run, in fractions."""
    keys = [*metrics, *(f"val.{m}" for m in metrics), *(f"train.{m}" for m in metrics),
            "epoch", "val.gain"]
    values = {}
    for key in keys:
        for name in (REPORTED + key, key):
            if FRACTION + name in logged:
                values[key] = logged[FRACTION + name]
            elif name in logged:
                scaled = percent and in_percent(key, metrics)
                values[key] = logged[name] / 100.0 if scaled else logged[name]
            else:
                continue
            break
    return values


NOTE_LIMIT = 8000
"""MLflow's longest tag value."""


def _within(text: str, limit: int) -> str:
    """``text``, cut at the last whole line that fits in ``limit`` characters."""
    if len(text) <= limit:
        return text
    cut = text[:limit - 100].rsplit("\n", 1)[0]
    return cut + "\n\n(cut: the whole board is in the artifacts)\n"


def in_percent(key: str, metrics: tuple[str, ...]) -> bool:
    """Whether ``key`` (``top1``, ``val.top1``, ``hint.val.top1``, ``val.gain``) is a value of
    one of the run's ``metrics`` (a fraction), which MLflow shows in percent like the board;
    losses, epochs and seconds keep their own units."""
    if key.startswith("loss") or ".loss" in key:
        return False
    return key == "val.gain" or any(key == m or key.endswith("." + m) for m in metrics)


def in_percent_with_fraction(name: str, fraction: float) -> dict[str, float]:
    """A fraction logged as run metrics are: in percent under ``name`` (:func:`_shown`), the
    exact fraction beside it under ``fraction.<name>``."""
    return {name: _shown(fraction, True), FRACTION + name: fraction}


def _shown(value: float, percent: bool) -> float:
    """``value`` as MLflow shows it: in percent, to 1e-4 points, when ``percent`` (the exact
    fraction is logged beside it)."""
    return round(100.0 * value, 4) if percent and math.isfinite(value) else value


def metric_key(label: str) -> str:
    """A row label as MLflow accepts it in a metric or tag name: ``kd[T=1 alpha=0.5]`` ->
    ``kd T:1 alpha:0.5``."""
    key = label.replace("[", " ").replace("]", "").replace("=", ":")
    return re.sub(r"[^\w.\- :/]", "_", key).strip()


def runs_view(metric: str) -> str:
    """The runs table kdbench opens the UI on (:data:`RUNS_VIEW`): the runs of every sweep,
    not the sweeps, grouped by row, with role, method, seed and the final ``metric`` (test,
    validation and train) as columns."""
    columns = [*(f"params.`{p}`" for p in ("row", "role", "method", "seed")),
               *(f"metrics.`{m}`" for m in (metric, f"{REPORTED}val.{metric}",
                                             f"train.{metric}")), "attributes.`Duration`"]
    return json.dumps({"searchFilter": f"tags.`{TAG}role` != 'sweep'",
                       "orderByKey": "params.`row`", "orderByAsc": True,
                       "selectedColumns": columns, "columnOrder": columns})


def view_url(base: str, experiment_id: str, run_id: str | None = None,
             artifact: str | None = None) -> str:
    """The UI's address, in model-training mode, of an experiment's runs table opened on
    :data:`RUNS_VIEW`; with ``run_id``, of that run's page, or of one of its artifacts."""
    base = base.rstrip("/") + f"/#/experiments/{experiment_id}/runs"
    mode = "workflowType=machine_learning"
    if run_id is None:
        return f"{base}?{mode}&viewStateShareKey={RUNS_VIEW}"
    return f"{base}/{run_id}{f'/artifacts/{artifact}' if artifact else ''}?{mode}"


def _ms(seconds: float) -> int | None:
    """Epoch seconds as MLflow's epoch milliseconds; ``None`` (MLflow's "now") when unknown."""
    return int(seconds * 1000) if seconds else None
