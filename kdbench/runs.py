"""The plain data of a run: what to train (:class:`Job`), where it sits in a sweep
(:class:`Run`) and what came out (:class:`RunResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from kdbench.accel import Accel
from kdbench.spec import Component, Protocol, Recipe

Role = Literal["teacher", "baseline", "method"]


@dataclass(frozen=True)
class TeacherRef:
    """How a run gets its teacher: a provider, its architecture and parameters, and where
    kdbench keeps the checkpoint of a teacher it trains."""

    provider: str
    model: Component | None
    params: dict[str, Any]
    fingerprint: str
    checkpoint: str | None


@dataclass(frozen=True)
class Job:
    """Everything a worker needs to execute one run; picklable, a pure input."""

    role: Role
    method: str | None
    method_params: dict[str, Any]
    seed: int
    dataset: Component
    model: Component | None
    recipe: Recipe
    teacher: TeacherRef | None
    metrics: tuple[str, ...]
    cache_dir: str
    device: str = "cpu"
    threads: int = 1
    """Torch intra-op threads of the run. Part of its identity: a different count sums in a
    different order and rounds differently, so it is fixed per run, never per pool."""
    protocol: Protocol = field(default_factory=Protocol)
    """The validation split the run holds out of its training data, and which epoch it
    reports (:class:`~kdbench.spec.Protocol`)."""
    evaluate_test: bool = True
    """Whether the run reads the test split (once, at the end). ``False`` (tuning) seals it:
    any use raises, and the result has no test metrics."""
    accel: Accel = field(default_factory=Accel)
    """bf16 autocast, channels-last, ``torch.compile`` (:mod:`kdbench.accel`); part of the
    run's identity, like ``device``."""
    engine: str = "plain"
    """How the run trains: ``plain`` (:func:`kdbench.train.execute`, one run at a time) or
    ``stacked`` (:mod:`kdbench.batched`, with other seeds of its row as one stacked model).
    Part of its identity when stacked: the two agree only up to float rounding."""
    metric: str = ""
    """The metric that picks the reported epoch under ``protocol.epoch = "best"`` and whose
    ``val.gain`` is reported; empty: the first of ``metrics``."""


@dataclass(frozen=True)
class Group:
    """Runs of one row, differing only in their seed, that train together as one stacked
    model (:mod:`kdbench.batched`). An executor that sets ``groups = True`` receives them
    among its jobs and yields one :class:`RunResult` per job, in order, as a list."""

    jobs: tuple[Job, ...]


@dataclass(frozen=True)
class Run:
    """One run of a sweep: a row label, a seed and the fingerprint of all its inputs."""

    role: Role
    label: str
    seed: int
    fingerprint: str
    job: Job
    spec_fingerprint: str = ""
    """The fingerprint of the run's inputs without the code: equal between a run and a stale
    one of an older plugin version, which is how ``kdbench run`` tells why it retrains."""
    code: dict[str, str] = field(default_factory=dict, hash=False)
    """The code behind the run by part (``method``, ``student``, ``dataset``, ``kdbench``...):
    ``"<distribution> <version> <source hash>"`` (:mod:`kdbench.identity`)."""

    @property
    def method(self) -> str | None:
        return self.job.method

    @property
    def params(self) -> dict[str, Any]:
        return self.job.method_params

    def describe(self) -> str:
        return f"{self.label} seed {self.seed}"


@dataclass
class RunResult:
    """What a run produced.

    ``metrics`` holds, for the reported epoch's weights (:class:`~kdbench.spec.Protocol`):
    the test metrics under their plain names (``top1``: what the leaderboard ranks; absent
    when the job does not evaluate the test split), ``val.<metric>`` on the validation
    split, ``train.<metric>`` on the training split less the validation part (eval mode, no
    augmentation), ``epoch`` (the reported epoch of the main training, 1-based) and
    ``val.gain`` (:func:`kdbench.train.validation_gain`). ``history`` has one dict per epoch
    and phase: loss terms and ``val.<metric>``; the test split never appears in it."""

    fingerprint: str
    status: Literal["finished", "failed"]
    metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    student_parameters: int = 0
    checkpoint: str | None = None
    error: str | None = None
    run_id: str | None = None
    reused: bool = False
    started: float = 0.0
    ended: float = 0.0
    """Wall-clock start and end of the run in the worker (seconds since the epoch); MLflow
    shows them as the run's start and end."""
    traceback: str | None = None
    """The worker's formatted traceback of a failed run (``error`` is its one line);
    ``--debug`` prints it."""
    source: str = ""
    """Where a result not trained by this sweep was copied from (a teacher's run kept in the
    cache, :mod:`kdbench.teacher_cache`); empty for a run trained here."""
    artifacts: dict[str, bytes] = field(default_factory=dict)
    """Files the run produced for MLflow (file name -> contents, e.g. a data-free method's
    ``impressions.png``): the worker returns them, the driver logs them (one writer)."""
