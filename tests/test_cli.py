"""``kdbench`` from the command line, end to end on a tiny benchmark."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kdbench.cli import main


def _board(out: Path, name: str = "tiny") -> dict:
    return json.loads((out / f"{name}.json").read_text())


def test_run_then_rerun_reuses_everything(tiny: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture) -> None:
    uri = f"sqlite:///{tmp_path / 'ml.db'}"
    out = tmp_path / "out"
    assert main(["run", str(tiny), "--tracking-uri", uri, "--out", str(out)]) == 0
    first = capsys.readouterr()
    assert "5 to train" in first.err
    board = _board(out)
    assert board["benchmark"] == "tiny" and board["metric"] == "top1"
    assert board["teacher"]["name"] == "cnn1d" and 1 < board["teacher"]["value"] <= 100
    assert board["baseline"]["seeds"] == [0, 1] and len(board["baseline"]["values"]) == 2
    (row,) = board["rows"]
    assert row["method"] == "kd" and row["params"] == {"T": 4.0, "alpha": 0.9}
    assert row["seeds"] == [0, 1] and len(row["values"]) == 2
    assert row["mean"] == pytest.approx(sum(row["values"]) / 2)
    for key in ("ci95", "delta", "delta_ci95", "p", "p_holm", "hedges_g", "prob_improvement",
                "verdict", "seeds_needed"):
        assert key in row
    assert (out / "tiny.md").is_file() and (out / "tiny.csv").is_file()
    assert "baseline" in first.out and "kd" in first.out

    assert main(["run", str(tiny), "--tracking-uri", uri, "--out", str(out)]) == 0
    second = capsys.readouterr()
    assert "5 reused from MLflow, 0 to train" in second.err
    assert _board(out)["rows"] == board["rows"]

    (out / "tiny.json").unlink()
    assert main(["leaderboard", str(tiny), "--tracking-uri", uri, "--out", str(out)]) == 0
    assert _board(out) == board

    assert main(["run", str(tiny), "--tracking-uri", uri, "--out", str(out), "--seeds", "3",
                 "--methods", "kd"]) == 0
    third = capsys.readouterr()
    assert "5 reused from MLflow, 2 to train" in third.err
    assert _board(out)["rows"][0]["seeds"] == [0, 1, 2]


def test_mlflow_holds_the_runs_with_their_tags(tiny: Path, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'ml.db'}"
    assert main(["run", str(tiny), "--tracking-uri", uri, "--seeds", "1", "--out",
                 str(tmp_path / "o")]) == 0
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("tiny")
    runs = client.search_runs([experiment.experiment_id])
    roles = sorted(r.data.tags["kdbench.role"] for r in runs)
    assert roles == ["baseline", "method", "sweep", "teacher"]
    sweep = next(r for r in runs if r.data.tags["kdbench.role"] == "sweep")
    kd = next(r for r in runs if r.data.tags["kdbench.role"] == "method")
    assert kd.data.tags["mlflow.parentRunId"] == sweep.info.run_id
    assert kd.data.tags["kdbench.method"] == "kd" and kd.data.tags["kdbench.seed"] == "0"
    assert len(kd.data.tags["kdbench.fingerprint"]) == 16
    assert kd.data.params["method.T"] == "4.0" and kd.data.params["recipe.epochs"] == "2"
    history = client.get_metric_history(kd.info.run_id, "loss.kd")
    assert [m.step for m in history] == [1, 2]
    teacher = next(r for r in runs if r.data.tags["kdbench.role"] == "teacher")
    artifacts = [a.path for a in client.list_artifacts(teacher.info.run_id)]
    assert artifacts == [f"{teacher.data.tags['kdbench.fingerprint']}.pt"]
    assert {a.path for a in client.list_artifacts(sweep.info.run_id)} >= {"tiny.json", "tiny.md"}


@pytest.mark.parametrize(("args", "message"), [
    (["run", "nowhere.toml"], "benchmark file nowhere.toml does not exist"),
    (["run", "mnist1e"], "did you mean 'mnist1d'"),
    (["run", "--tracking-uri", "http://127.0.0.1:9"], "cannot use tracking store http://127.0.0.1:9"),
    (["run", "--methods", "nope"], "--methods: 'nope' is not a method of benchmark 'mnist1d'"),
    (["run", "--device", "tpu"], "--device must be cpu, cuda or auto"),
    (["leaderboard", "--tracking-uri", "sqlite:///empty.db"], "no finished runs of benchmark"),
])
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str,
                                          capsys: pytest.CaptureFixture) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("kdbench: error: ") and message in err
    assert err.count("\n") == 1


def test_a_missing_checkpoint_is_reported_before_training(tiny: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    text = tiny.read_text().replace('[teacher]\nmodel = "cnn1d"',
                                    '[teacher]\nprovider = "checkpoint"\npath = "gone.pt"\n'
                                    'model = "cnn1d"')
    tiny.write_text(text)
    assert main(["run", str(tiny), "--tracking-uri", f"sqlite:///{tmp_path / 'x.db'}"]) == 2
    assert "teacher checkpoint gone.pt does not exist" in capsys.readouterr().err


def test_a_checkpoint_teacher_is_evaluated_not_trained(tiny: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    import torch

    from kdbench import train
    from kdbench.spec import Component

    data = train.dataset(Component("mnist1d", {"num_samples": 600, "train_split": 0.8,
                                               "seed": 42}), str(tmp_path / "c"))
    model = train.build_model(Component("cnn1d", {"channels": 25, "depth": 3}), data)
    torch.save(model.state_dict(), tmp_path / "teacher.pt")
    path = tmp_path / "teacher.pt"
    text = tiny.read_text().replace('[teacher]\nmodel = "cnn1d"',
                                    f'[teacher]\nprovider = "checkpoint"\npath = "{path}"\n'
                                    'model = "cnn1d"')
    tiny.write_text(text)
    out = tmp_path / "o"
    assert main(["run", str(tiny), "--seeds", "1", "--tracking-uri",
                 f"sqlite:///{tmp_path / 'x.db'}", "--out", str(out)]) == 0
    # An untrained network: chance level on 10 classes.
    assert _board(out)["teacher"]["value"] < 35


def test_plugins_lists_the_builtins(capsys: pytest.CaptureFixture) -> None:
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "methods  (kdbench" in out
    listed = next(line for line in out.splitlines() if line.startswith("  methods: "))
    assert "kd" in listed.removeprefix("  methods: ").split(", ")
    assert "mnist1d" in next(line for line in out.splitlines() if line.startswith("  datasets: "))
    assert "  executors: process, ray, serial" in out


def test_compare_ranks_methods_across_benchmarks(tiny: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    uri = f"sqlite:///{tmp_path / 'ml.db'}"
    other = tmp_path / "tiny2.toml"
    other.write_text(tiny.read_text().replace('name = "tiny"', 'name = "tiny2"')
                     .replace("T = 4.0", "T = 2.0"))
    for bench in (tiny, other):
        assert main(["run", str(bench), "--tracking-uri", uri, "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["compare", str(tiny), str(other), "--tracking-uri", uri, "--out",
                 str(tmp_path)]) == 0
    printed = capsys.readouterr()
    out = printed.out
    assert "average ranks over 2 benchmarks" in out and "Friedman" in out
    assert "Iman–Davenport F" in out
    # two methods on two benchmarks: CD = 1.39 > 1, the widest possible gap of average ranks
    assert "no two methods can be told apart" in printed.err and "≥ 4" in printed.err
    result = json.loads((tmp_path / "compare.json").read_text())
    assert set(result["average_ranks"]) == {"baseline", "kd"}
    assert sorted(result["average_ranks"].values()) in ([1.0, 2.0], [1.5, 1.5])
    assert result["separable"] is False and "iman_davenport_p" in result
    assert (tmp_path / "compare.png").stat().st_size > 1000

    # A benchmark whose baseline has no finished run: one line, exit 2 (was float(None)).
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("tiny2").experiment_id
    for run in client.search_runs([experiment], "tags.`kdbench.role` = 'baseline'"):
        client.delete_run(run.info.run_id)
    assert main(["compare", str(tiny), str(other), "--tracking-uri", uri, "--out",
                 str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "'tiny2' has no finished baseline run" in err


def test_until_decided_adds_seeds_and_stops(tiny: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    uri = f"sqlite:///{tmp_path / 'ml.db'}"
    out = tmp_path / "o"
    assert main(["run", str(tiny), "--tracking-uri", uri, "--out", str(out), "--until-decided",
                 "--max-seeds", "4"]) == 0
    err = capsys.readouterr().err
    assert "look 1/2: 2 seeds" in err
    board = _board(out)
    (row,) = board["rows"]
    # Either decided at the first look, at its spent alpha, or given the second batch of seeds.
    if "look 2/2" in err:
        assert row["seeds"] == [0, 1, 2, 3] and board["baseline"]["seeds"] == [0, 1, 2, 3]
    else:
        assert row["verdict"] != "no evidence"
    assert board["alpha"] < 0.05
    assert main(["run", str(tiny), "--until-decided"]) == 2
    assert "--until-decided needs --max-seeds" in capsys.readouterr().err


def test_dry_run_plans_and_checks_but_trains_and_stores_nothing(tiny: Path, tmp_path: Path,
                                                                capsys) -> None:
    from kdbench.cli import main

    store = tmp_path / "dry.db"
    code = main(["run", str(tiny), "--dry-run", "--tracking-uri", f"sqlite:///{store}",
                 "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 0
    assert "5 runs planned and checked; nothing trained" in out
    assert {"teacher", "baseline", "kd"} <= {line.split()[0] for line in out.splitlines()[1:]}
    assert not store.exists() and not (tmp_path / "out").exists()
