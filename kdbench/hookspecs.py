"""The contract between kdbench and its plugins.

A plugin is a module (or object) that implements some of the hooks below with
``@kdbench.hookimpl`` and is registered under the ``kdbench`` entry-point group::

    [project.entry-points.kdbench]
    my_method = "my_package.plugin"

Registration hooks receive a ``register`` callback. Call it once per thing the
plugin provides::

    @kdbench.hookimpl
    def kdbench_methods(register):
        register("my-method", MyMethod)

``register(name, factory, params=None, description=None)`` records ``factory``
under ``name``. ``params`` is a dataclass of the factory's hyperparameters; a
benchmark file's keys are checked against its fields and types, and MLflow logs
them. When omitted, the factory's ``Params`` attribute is used, if any. The
description defaults to the first line of the factory's docstring.

``factory`` and ``params`` may also be references, imported the first time a benchmark
uses them (:class:`kdbench.registry.Lazy`): ``"my_package.method:MyMethod"`` (the
entry-point syntax), or ``Lazy("my_package.models:TABLE", "name")`` for one entry of a
table of factories. Then loading the plugin imports nothing of it: ``kdbench plugins``,
``--help`` and every one-line error stay instant however heavy the plugin's imports
(torch, torchvision), and the built-in plugins register this way. A reference that cannot
be imported is reported when a benchmark uses it, naming the plugin.

Names are global per kind: two plugins registering the same name (of the same
kind) is an error, exit code 2, whose message names both plugins and their
distributions; kdbench never picks one silently. Pick one by disabling the other,
by its entry-point name as ``kdbench plugins`` lists it::

    kdbench run my_bench.toml --disable-plugin other_plugin     # repeatable
    KDBENCH_DISABLE_PLUGINS=other_plugin,another kdbench run my_bench.toml

A disabled plugin is not even imported, in the driver or in any worker.

Registration is all or nothing: a plugin that fails to import, raises in a
registration hook or registers something invalid contributes no name at all (a
warning names it; ``--strict-plugins`` makes it an error).

Code is part of a run's identity: a run's fingerprint includes, for its method,
models, teacher provider, dataset and metrics, the providing distribution's name
and version and a hash of the source of the module that defines the registered
factory (with the modules of the same package it uses). Changing a plugin's code
or version retrains the runs that use it, and only those; ``kdbench run`` says
which and why.

Event hooks observe a sweep. They run in the driver process only, in the order
results arrive, and must not raise: an exception in an event hook is reported and
the sweep goes on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from kdbench.registry import Register
    from kdbench.runs import Run, RunResult
    from kdbench.sweep import Sweep

hookspec = pluggy.HookspecMarker("kdbench")


@hookspec
def kdbench_datasets(register: Register) -> None:
    """Register datasets.

    ``factory(params, cache_dir) -> kdbench.data.Dataset``: tensors for the
    train and test splits plus their metadata (classes, input shape). Called
    once per process per sweep; expensive builds should cache under
    ``cache_dir``.
    """


@hookspec
def kdbench_students(register: Register) -> None:
    """Register model architectures usable as students (and as trained teachers).

    ``factory(params, info) -> torch.nn.Module``, where ``info`` is the
    dataset's :class:`kdbench.data.DataInfo`. The module must carry a
    ``taps`` attribute, a :class:`kdbench.taps.TapPoints` naming the module
    whose output is the embedding and the modules that end each stage.
    """


@hookspec
def kdbench_teachers(register: Register) -> None:
    """Register teacher providers.

    ``factory(params)``: a provider (:mod:`kdbench.teacher`) whose ``load`` gives a
    frozen model with taps, obtained however the provider likes: trained by kdbench,
    loaded from a checkpoint, a torchvision network from weights on disk, or fitted
    by kdbench (:class:`kdbench.teacher.Fitted`: a scikit-learn estimator, PCA).
    """


@hookspec
def kdbench_methods(register: Register) -> None:
    """Register distillation methods: subclasses of :class:`kdbench.method.Method`."""


@hookspec
def kdbench_metrics(register: Register) -> None:
    """Register evaluation metrics.

    ``factory(params) -> kdbench.metrics.Metric``: a callable
    ``(student_logits, targets, teacher_logits) -> float`` over a whole split
    (the validation split after every epoch, the training and test splits once at
    the end of a run), with ``higher_is_better``. A metric that reads the model's
    embedding or retrieves from the training split declares ``needs`` (``embedding``,
    ``database``) and gets a :class:`kdbench.metrics.Outputs` instead (retrieval mAP,
    :mod:`kdbench.retrieval`).
    """


@hookspec
def kdbench_executors(register: Register) -> None:
    """Register executors: where runs execute.

    ``factory(params) -> kdbench.executors.Executor``. An executor maps the
    pure function ``train.execute(job) -> RunResult`` over jobs and yields
    results as they finish; it never writes to the tracking store. One that sets
    ``groups = True`` maps ``kdbench.batched.execute_unit`` instead, over jobs and
    groups of seeds stacked into one model (``kdbench.runs.Group``); a sweep with stacked
    runs refuses an executor without it.
    """


@hookspec
def kdbench_benchmarks(register: Register) -> None:
    """Register benchmark files by name: ``register("mnist1d", path_to_toml)``.

    ``kdbench run NAME`` looks the name up here.
    """


# Events ---------------------------------------------------------------------


@hookspec
def kdbench_sweep_start(sweep: Sweep) -> None:
    """A sweep is planned: ``sweep.runs`` lists every run, reused ones included."""


@hookspec
def kdbench_run_start(run: Run) -> None:
    """A run was handed to the executor."""


@hookspec
def kdbench_epoch_end(run: Run, phase: str, epoch: int, epochs: int,
                      metrics: dict[str, float]) -> None:
    """A run finished an epoch of ``phase`` (``"train"`` or a method's warm-up stage)."""


@hookspec
def kdbench_run_end(run: Run, result: RunResult) -> None:
    """A run finished (or failed: see ``result.status``) and was logged."""


@hookspec
def kdbench_sweep_end(sweep: Sweep, results: dict[str, Any]) -> None:
    """Every run of the sweep has a result; ``results`` maps fingerprints to them."""
