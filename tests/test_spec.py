from pathlib import Path

import pytest

from kdbench.errors import KdbenchError, SpecError
from kdbench.spec import load


def test_the_builtin_benchmark_loads_by_name(plugins) -> None:
    spec = load("mnist1d", plugins)
    assert spec.name == "mnist1d"
    assert spec.seeds == (0, 1, 2, 3, 4)
    assert spec.metric == "top1"
    assert spec.teacher.model.name == "cnn1d"
    assert spec.student.name == "cnn1d_small"
    assert spec.student.params["channels"] == 16 and spec.dataset.params["augment"] == "crop"
    kd = [m for m in spec.methods if m.table == "kd"]
    assert [m.label for m in kd] == ["kd[T=1]", "kd[T=4]"]
    assert [m.params for m in kd] == [{"T": 1.0, "alpha": 0.9}, {"T": 4.0, "alpha": 0.9}]


def test_options_select_seeds_and_methods(tiny: Path, plugins) -> None:
    spec = load(str(tiny), plugins).with_options(seeds=3, methods=["kd"])
    assert spec.seeds == (0, 1, 2)
    assert [m.label for m in spec.methods] == ["kd"]
    with pytest.raises(SpecError, match=r"--methods: 'kdd' is not a method.*did you mean 'kd'"):
        spec.with_options(methods=["kdd"])


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(("edit", "message"), [
    (("[methods.kd]", "[methods.kdd]"), r"unknown method 'kdd' \(did you mean 'kd'\?\); installed: .*kd"),
    (("T = 4.0", "temperature = 4.0"), r"\[methods.kd\] unknown parameter 'temperature'.*allowed: T, alpha"),
    (("T = 4.0", 'T = "four"'), r"\[methods.kd\] T must be float, got 'four'"),
    (("epochs = 2", 'epochs = 2.5'), r"\[recipe\] epochs must be int, got 2.5"),
    (('name = "cnn1d_small"', 'name = "cnn"'), r"\[student\] unknown student 'cnn'.*installed: .*cnn1d"),
    (('seeds = 2', 'sedes = 2'), r"unknown key 'sedes' \(did you mean 'seeds'\?\)"),
    (('metric = "top1"', 'metric = "top2"'), r"unknown metric 'top2'"),
    (('lr = 0.01\n\n[executor]', 'lr = 0.01\noptimizer = "lion"\n\n[executor]'),
     r"\[recipe\] optimizer must be one of 'sgd', 'adam', 'adamw', got 'lion'"),
])
def test_errors_name_the_file_the_key_and_what_is_allowed(tiny: Path, tmp_path: Path, plugins,
                                                          edit: tuple[str, str], message: str) -> None:
    text = tiny.read_text()
    assert edit[0] in text
    path = _write(tmp_path, text.replace(edit[0], edit[1], 1))
    with pytest.raises(SpecError, match=message) as error:
        load(path, plugins)
    assert str(error.value).startswith(path + ": ")
    assert "\n" not in str(error.value)


def test_missing_file_and_unknown_name(plugins) -> None:
    with pytest.raises(SpecError, match=r"benchmark file nowhere\.toml does not exist"):
        load("nowhere.toml", plugins)
    with pytest.raises(SpecError, match=r"no benchmark named 'mnist1e' \(did you mean 'mnist1d'\?\)"):
        load("mnist1e", plugins)


def test_invalid_toml(tmp_path: Path, plugins) -> None:
    with pytest.raises(KdbenchError, match="not valid TOML"):
        load(_write(tmp_path, "name = \n"), plugins)


def test_a_seed_list_is_kept_as_written(tiny: Path, tmp_path: Path, plugins) -> None:
    spec = load(_write(tmp_path, tiny.read_text().replace("seeds = 2", "seeds = [10, 3, 7]")),
                plugins)
    assert spec.seeds == (10, 3, 7)


def test_a_byte_order_mark_is_not_an_error(tiny: Path, tmp_path: Path, plugins) -> None:
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + tiny.read_bytes())
    assert load(str(path), plugins).name == "tiny"


def test_nan_is_refused_at_any_depth(tiny: Path, tmp_path: Path, plugins) -> None:
    text = tiny.read_text().replace("alpha = 0.9", "alpha = 0.9\n[methods.vid]\nlambdas = [1.0, nan]")
    with pytest.raises(SpecError, match=r"\[methods.vid\] lambdas must be a finite number, got nan"):
        load(_write(tmp_path, text), plugins)


def test_a_folder_named_like_a_builtin_does_not_hide_it(tmp_path: Path, plugins) -> None:
    (tmp_path / "mnist1d").mkdir()  # the tests run in tmp_path
    assert load("mnist1d", plugins).name == "mnist1d"
    (tmp_path / "mine").mkdir()
    with pytest.raises(SpecError, match=r"mine is a directory; give a benchmark \.toml file in it"):
        load("mine", plugins)
