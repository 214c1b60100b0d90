"""The progress lines: what each worker trains, the metrics in percent, and a time left that
learns what an epoch of each method costs."""

from __future__ import annotations

import io
from types import SimpleNamespace

from kdbench.progress import Progress
from kdbench.runs import RunResult


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _run(label: str, seed: int, method: str | None = None) -> SimpleNamespace:
    role = "method" if method else label
    return SimpleNamespace(
        fingerprint=f"{label}-{seed}", label=label, seed=seed, role=role, method=method,
        job=SimpleNamespace(recipe=SimpleNamespace(epochs=10), metrics=("top1",)),
        describe=lambda: f"{label} seed {seed}")


def _finished(run: SimpleNamespace, seconds: float) -> RunResult:
    return RunResult(run.fingerprint, "finished",
                     {"top1": 0.615, "val.top1": 0.6, "epoch": 10.0}, seconds=seconds)


def test_time_left_learns_each_methods_cost_per_epoch() -> None:
    now = [0.0]
    base = [_run("baseline", 0), _run("baseline", 1)]
    kd = [_run("kd", 0, "kd"), _run("kd", 1, "kd")]
    out = Terminal()
    progress = Progress(workers=2, stream=out, clock=lambda: now[0])
    progress.kdbench_sweep_start(SimpleNamespace(spec=SimpleNamespace(name="tiny"),
                                                 runs=base + kd, results={}))
    assert progress.status() == "elapsed 0:00, left ~?"
    # Two baseline runs, one per worker, an epoch a second.
    for epoch in range(1, 11):
        now[0] = float(epoch)
        for run in base:
            progress.kdbench_epoch_end(run, "train", epoch, 10, {"loss": 0.5, "val.top1": 0.5})
        if epoch == 3:
            # 7 epochs left of each baseline at 1 s, and kd (not seen yet) at the same cost,
            # 10 epochs each, over 2 workers: (14 + 20) / 2 = 17 s.
            assert progress.status() == "elapsed 0:03, left ~0:17"
            assert out.getvalue().endswith(
                "\r\033[K[0/4 done] baseline seeds 0-1 train 3/10  elapsed 0:03, left ~0:17")
    for run in base:
        progress.kdbench_run_end(run, _finished(run, 10.0))
    # The two kd seeds, stacked on one worker: an epoch every 2 s for both.
    for epoch in (1, 2):
        now[0] = 10.0 + 2 * epoch
        for run in kd:
            progress.kdbench_epoch_end(run, "train", epoch, 10, {"loss": 0.5})
    # kd costs 2 s per epoch of each run (a worker each, as far as the estimate knows), so
    # 2 runs × 8 epochs × 2 s over 2 workers: 16 s, the group's 8 epochs of 2 s.
    assert progress.cost("kd") == 2.0 and progress.cost("baseline") == 1.0
    assert out.getvalue().endswith("[2/4 done] kd seeds 0-1 train 2/10  elapsed 0:14, left ~0:16")


def test_finished_runs_are_one_line_each_in_percent() -> None:
    now = [0.0]
    out = io.StringIO()  # not a terminal: a line per run
    progress = Progress(workers=1, stream=out, clock=lambda: now[0])
    runs = [_run("baseline", 0), _run("kd", 0, "kd")]
    progress.kdbench_sweep_start(SimpleNamespace(spec=SimpleNamespace(name="tiny"),
                                                 runs=runs, results={}))
    for epoch in range(1, 11):
        now[0] = 3.0 * epoch
        progress.kdbench_epoch_end(runs[0], "train", epoch, 10, {"loss": 0.5})
    progress.kdbench_epoch_end(runs[1], "hint", 1, 2, {"loss": 0.5})
    now[0] = 30.0
    progress.kdbench_run_end(runs[0], _finished(runs[0], 30.0))
    last = out.getvalue().splitlines()[-1]
    # 3 s per epoch of the baseline; kd has 1 hint epoch and 10 of training left.
    assert last == ("[1/2] baseline seed 0: top1 61.50%, val.top1 60.00% (30.0 s); training: "
                    "kd seed 0 hint 1/2; elapsed 0:30, left ~0:33")
    assert "0.615" not in out.getvalue()
