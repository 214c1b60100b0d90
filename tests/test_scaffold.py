"""`kdbench new KIND NAME`: refusals in one line, and a skeleton of every kind that registers,
passes the conformance kit and whose benchmark file is valid, checked in this process
(`tests/test_guides.py` installs one into a fresh virtual environment and runs it)."""

from __future__ import annotations

import importlib
import sys
import tomllib
from pathlib import Path

import pytest

from kdbench import conformance, scaffold
from kdbench.cli import main
from kdbench.plugins import Plugins

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(("argv", "says"), [
    (["new", "method", "My_KD"], "'My_KD' is not a plugin name"),
    (["new", "method", "my--kd"], "is not a plugin name"),
    (["new", "method", "2kd"], "is not a plugin name"),
    (["new", "method", "kd"], "method 'kd' is already registered by the installed plugin 'methods'"),
    (["new", "model", "cnn2d"], "model 'cnn2d' is already registered"),
])
def test_a_bad_name_is_refused_in_one_line(argv: list[str], says: str, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*argv, "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kdbench: error: new ") and err.count("\n") == 1, err
    assert says in err
    assert not any(tmp_path.iterdir())  # nothing written


def test_an_existing_folder_is_refused_and_left_alone(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("mine")
    assert main(["new", "metric", "mine", "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already exists" in err, err
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["keep.txt"]


def test_an_unknown_kind_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["new", "loss", "mine"])
    assert stopped.value.code == 2
    assert "invalid choice: 'loss'" in capsys.readouterr().err


def _load(folder: Path, module: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, module, raising=False)
    loaded = importlib.import_module(module)
    monkeypatch.setitem(sys.modules, module, loaded)  # removed again after the test
    return loaded


@pytest.mark.parametrize("kind", sorted(scaffold.KINDS))
def test_every_skeleton_is_a_working_plugin(kind: str, tmp_path: Path, cache_dir: Path,
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from kdbench import spec as specs
    from kdbench import train

    name = f"probe-{kind}"
    assert main(["new", kind, name, "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    # the conftest runs each test in tmp_path: the folder is shown relative to it
    assert f"kdbench: wrote {name}/ (kdbench-{name}: {kind} {name!r}); next:" in out, out
    assert f"kdbench run {name}.toml --smoke" in out
    folder = tmp_path / name
    names = scaffold.names_of(name)
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert files == sorted([".gitignore", "pyproject.toml", f"{names['module']}.py", f"{name}.toml",
                            f"tests/test_{names['plugin']}.py"])
    project = tomllib.loads((folder / "pyproject.toml").read_text())
    assert project["project"]["entry-points"]["kdbench"] == {names["plugin"]: names["module"]}
    compile((folder / f"tests/test_{names['plugin']}.py").read_text(), "test", "exec")

    module = _load(folder, names["module"], monkeypatch)
    plugins = Plugins.load(strict=True, extra=[(names["plugin"], module)])
    table = plugins.table(scaffold.KINDS[kind])
    assert table[name].plugin == names["plugin"]
    monkeypatch.setattr(train, "plugins", lambda: plugins)  # the process's plugins
    bench = specs.load(str(folder / f"{name}.toml"), plugins)  # the file is valid as written
    if kind == "method":
        report = conformance.check_method(name, conformance.PAIRS[:1], plugins=plugins, steps=5)
        assert report.terms == ("ce", "kd")
        assert [m.method for m in bench.methods] == ["kd", name]
    elif kind == "model":
        conformance.check_model(name, plugins=plugins)
        assert bench.student.name == bench.teacher.model.name == name
    elif kind == "dataset":
        assert conformance.check_dataset(name, cache_dir=tmp_path, plugins=plugins).num_classes == 3
    elif kind == "metric":
        conformance.check_metric(name, plugins)
        assert bench.metric == name
    elif kind == "teacher":
        data = train.prepared(_teacher_job(bench, plugins, cache_dir))
        provider = table[name].factory(table[name].make_params({}))
        teacher = provider.load(None, tmp_path / "teacher.pt", data)
        accuracy = (teacher(data.inputs(data.x_val)).argmax(1) == data.y_val).float().mean()
        assert accuracy > 0.8  # a ridge classifier on the 8×8 digits
    elif kind == "executor":
        executor = table[name].factory(table[name].make_params({}))
        events = []
        job = _teacher_job(bench.smoke(), plugins, cache_dir)
        [(index, result)] = list(executor.map([job], lambda *e: events.append(e)))
        assert index == 0 and result.status == "finished", result.error
        assert events and events[0][0] == 0


def _teacher_job(bench, plugins: Plugins, cache_dir: Path):
    from kdbench import sweep as sweeps

    return sweeps.plan(bench, plugins, cache_dir).teacher.job


def test_a_folder_outside_the_working_directory_is_named_in_full(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    inside = tmp_path / "work"
    inside.mkdir()
    monkeypatch.chdir(inside)
    assert main(["new", "metric", "elsewhere", "--dir", ".."]) == 0
    assert f"  cd {tmp_path.resolve() / 'elsewhere'}\n" in capsys.readouterr().out
    assert (tmp_path / "elsewhere" / "elsewhere.toml").is_file()
