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
child run's start and end are those of its training in the worker, not of its logging. A
run whose
fingerprint already FINISHED is reused. Only the driver process writes (SQLite has
one writer).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kdbench.errors import TrackingError
from kdbench.runs import Run, RunResult
from kdbench.spec import Spec

DEFAULT_URI = "sqlite:///mlflow.db"
REPORTED = "reported."
"""Prefix of a final value whose key the history also logs per epoch (``val.top1``)."""
TAG = "kdbench."
NOTE = "mlflow.note.content"


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

        try:
            self.client = MlflowClient(tracking_uri=self.uri)
            self.client.search_experiments(max_results=1)
        except Exception as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise TrackingError(
                f"cannot use tracking store {self.uri}: {first[:300]}; start the server, fix "
                f"--tracking-uri / MLFLOW_TRACKING_URI, or use the default {DEFAULT_URI}"
            ) from None

    # Experiments and sweeps -----------------------------------------------------

    def experiment(self, spec: Spec, create: bool = True) -> str | None:
        """The id of the benchmark's experiment (created on first use)."""
        found = self.client.get_experiment_by_name(spec.name)
        if found is None and not create:
            return None
        if found is None:
            experiment_id = self.client.create_experiment(spec.name)
        else:
            experiment_id = found.experiment_id
            if found.lifecycle_stage == "deleted":
                self.client.restore_experiment(experiment_id)
        note = found.tags.get(NOTE) if found is not None else None
        if create and spec.description and note != spec.description:
            # MLflow shows this tag as the experiment's description.
            self.client.set_experiment_tag(experiment_id, NOTE, spec.description)
        return experiment_id

    def start_sweep(self, experiment_id: str, spec: Spec, options: dict[str, Any]) -> str:
        run = self.client.create_run(experiment_id, run_name=f"sweep {spec.name}",
                                     tags={TAG + "role": "sweep", TAG + "benchmark": spec.name})
        from mlflow.entities import Param

        params = {"benchmark": str(spec.path), "seeds": ",".join(map(str, spec.seeds)),
                  "methods": ",".join(m.label for m in spec.methods), "metric": spec.metric,
                  **{k: str(v) for k, v in options.items()}}
        self.client.log_batch(run.info.run_id,
                              params=[Param(k, str(v)[:6000]) for k, v in params.items()])
        return run.info.run_id

    def end_sweep(self, sweep_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(sweep_id, status)

    # Runs that group others (``kdbench tune``: a row's tuning, a trial) -------------

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

    def log_values(self, run_id: str, metrics: dict[str, float],
                   params: dict[str, Any] | None = None) -> None:
        """Final metrics (step 0) and params of a run; a param logged again must keep its
        value (MLflow's rule)."""
        from mlflow.entities import Metric, Param

        self.client.log_batch(
            run_id, metrics=[Metric(k, float(v), 0, 0) for k, v in metrics.items()],
            params=[Param(k, str(v)[:6000]) for k, v in (params or {}).items()])

    def log_artifact(self, run_id: str, path: Path) -> None:
        self.client.log_artifact(run_id, str(path))

    # Runs -----------------------------------------------------------------------

    def log(self, experiment_id: str, sweep_id: str | None, run: Run, result: RunResult) -> str:
        """Write one run with its params, per-epoch metrics, tags and status."""
        from mlflow.entities import Metric, Param

        tags = {
            TAG + "role": run.role, TAG + "label": run.label, TAG + "method": run.method or "",
            TAG + "seed": str(run.seed), TAG + "fingerprint": run.fingerprint,
            TAG + "seconds": f"{result.seconds:.2f}",
            TAG + "student_parameters": str(result.student_parameters),
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
        created = self.client.create_run(experiment_id, run_name=f"{run.label} seed {run.seed}",
                                         tags=tags, start_time=_ms(result.started))
        run_id = created.info.run_id
        job = run.job
        params = {
            "role": run.role, "seed": run.seed, "method": run.method or "",
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
        metrics = []
        for row in result.history:
            prefix = "" if row["phase"] == "train" else f"{row['phase']}."
            for key, value in row.items():
                if key not in ("phase", "epoch") and isinstance(value, int | float):
                    metrics.append(Metric(prefix + key, float(value), 0, int(row["epoch"])))
        # The final values, under their plain names, are what the leaderboard reads. A key
        # the history also has per epoch (val.top1) holds the last epoch's value there, which
        # under the "best" epoch rule is not the reported one: that goes under reported.<key>.
        last = max((int(r["epoch"]) for r in result.history if r["phase"] == "train"), default=0)
        curves = {m.key for m in metrics}
        metrics += [Metric(REPORTED + k if k in curves else k, float(v), 0, last)
                    for k, v in result.metrics.items()]
        metrics.append(Metric("seconds", result.seconds, 0, 0))
        param_list = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, max(len(metrics), len(param_list)), 500):
            self.client.log_batch(run_id, metrics=metrics[i:i + 500],
                                  params=param_list[i:i + 500] if i < len(param_list) else [])
        if result.checkpoint:
            self.client.log_artifact(run_id, result.checkpoint)
        self.client.set_terminated(run_id, "FINISHED" if result.status == "finished" else "FAILED",
                                   end_time=_ms(result.ended))
        result.run_id = run_id
        return run_id

    def finished(self, experiment_id: str | None, fingerprints: set[str],
                 metrics: tuple[str, ...]) -> dict[str, RunResult]:
        """The latest FINISHED run for each fingerprint that has one, as results."""
        found: dict[str, RunResult] = {}
        for r in self._finished_runs(experiment_id):
            fp = r.data.tags.get(TAG + "fingerprint")
            if fp in fingerprints and fp not in found:
                found[fp] = RunResult(
                    fp, "finished", _final(r.data.metrics, metrics), [],
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
            page = self.client.search_runs(
                [experiment_id], filter_string="attributes.status = 'FINISHED'",
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

    def restore_checkpoint(self, run_id: str, destination: Path) -> bool:
        """Download a teacher's checkpoint artifact to ``destination``; ``False`` if absent."""
        try:
            with tempfile.TemporaryDirectory() as tmp:
                got = self.client.download_artifacts(run_id, destination.name, tmp)
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(got, destination)
            return True
        except Exception:
            return False


def _final(logged: dict[str, float], metrics: tuple[str, ...]) -> dict[str, float]:
    """A finished run's final metrics as :class:`RunResult` holds them: the test metrics, their
    ``val.`` and ``train.`` values at the reported epoch, ``epoch`` and ``val.gain``."""
    keys = [*metrics, *(f"val.{m}" for m in metrics), *(f"train.{m}" for m in metrics),
            "epoch", "val.gain"]
    values = {}
    for key in keys:
        value = logged.get(REPORTED + key, logged.get(key))
        if value is not None:
            values[key] = value
    return values


def _ms(seconds: float) -> int | None:
    """Epoch seconds as MLflow's epoch milliseconds; ``None`` (MLflow's "now") when unknown."""
    return int(seconds * 1000) if seconds else None
