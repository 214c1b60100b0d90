"""A trained teacher's run, kept beside its cached checkpoint for the next tracking store.

The checkpoint of a teacher kdbench trained (or fitted) is cached by fingerprint in
``$KDBENCH_CACHE/teachers``. A sweep on a store that has no run of that teacher (a new
``--tracking-uri``, a CI job's fresh SQLite file) would otherwise train it again although
its weights are on disk: 10 to 50 s on the MNIST-1D boards, hours for a CIFAR ResNet.
:func:`keep` writes the finished run's result (metrics, per-epoch history, times) next to
the checkpoint, with the checkpoint's SHA-256; :func:`recall` gives it back, for a store to
log as its teacher run, only while the checkpoint still matches that checksum. The same
fingerprint means the same inputs and code, so the copy is the run the new store would
have trained, up to the rounding noise of a second training.
"""

from __future__ import annotations

import json
from pathlib import Path

from kdbench import cachefile
from kdbench.runs import Run, RunResult

SUFFIX = ".run.json"
FORMAT = 1


def record_path(checkpoint: str | Path) -> Path:
    """Where the run of the teacher cached at ``checkpoint`` is kept."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.name + SUFFIX)


def keep(teacher: Run, result: RunResult) -> None:
    """Write ``result``, a finished run of ``teacher`` that left its checkpoint, beside it."""
    checkpoint = teacher.job.teacher.checkpoint if teacher.job.teacher else None
    if checkpoint is None or result.status != "finished" or not Path(checkpoint).is_file():
        return
    record = {"format": FORMAT, "fingerprint": teacher.fingerprint,
              "checkpoint_sha256": cachefile.digest(Path(checkpoint)),
              "metrics": result.metrics, "history": result.history,
              "seconds": result.seconds, "student_parameters": result.student_parameters,
              "started": result.started, "ended": result.ended}
    cachefile.write(record_path(checkpoint), lambda tmp: tmp.write_text(json.dumps(record)))


def recall(teacher: Run) -> RunResult | None:
    """The kept run of ``teacher``, when its checkpoint is cached and matches the checksum
    the run was kept with; ``None`` otherwise (the teacher trains)."""
    checkpoint = teacher.job.teacher.checkpoint if teacher.job.teacher else None
    if checkpoint is None:
        return None
    path = record_path(checkpoint)
    if not cachefile.intact(path):
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("format") != FORMAT or \
            record.get("fingerprint") != teacher.fingerprint:
        return None
    if not cachefile.intact(Path(checkpoint), record.get("checkpoint_sha256")):
        return None
    return RunResult(teacher.fingerprint, "finished", dict(record["metrics"]),
                     list(record["history"]), float(record["seconds"]),
                     int(record["student_parameters"]), checkpoint,
                     started=float(record["started"]), ended=float(record["ended"]),
                     source=str(path))
