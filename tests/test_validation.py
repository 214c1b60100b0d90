"""Everything a benchmark file or a flag says is checked when it is read, before anything trains.

Each refusal goes through the real command line (``kdbench.cli.main``): exit code 2, one line
on stderr that names the file or flag, the key and what is allowed, and no MLflow run and no
teacher checkpoint afterwards.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kdbench.api import check_run_count, writable_dir
from kdbench.cli import main
from kdbench.errors import KdbenchError, SpecError
from kdbench.params import Range, bounded, build
from kdbench.spec import load


def _runs(db: Path) -> int:
    """How many MLflow runs the store at ``db`` holds (none when it was never created)."""
    if not db.exists():
        return 0
    with sqlite3.connect(db) as connection:
        tables = {row[0] for row in connection.execute("select name from sqlite_master")}
        return connection.execute("select count(*) from runs").fetchone()[0] if "runs" in tables else 0


def refused(args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture) -> str:
    """Run the CLI with an isolated store and cache; assert it refused before training."""
    db, cache = tmp_path / "ml.db", tmp_path / "cache"
    command = args[0]
    extra = ["--tracking-uri", f"sqlite:///{db}"]
    if command in ("run", "leaderboard"):
        extra += ["--cache-dir", str(cache)]
    code = main([*args, *extra])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("kdbench: error: ") and err.count("\n") == 1, err
    assert _runs(db) == 0
    # Not even the dataset was built: planning, the first step that touches it, never began.
    assert not cache.exists() or not any(cache.rglob("*"))
    return err


def edited(tiny: Path, old: str, new: str) -> str:
    """``tiny`` with its first ``old`` replaced by ``new``, written back; the file's path."""
    text = tiny.read_text()
    assert old in text, old
    tiny.write_text(text.replace(old, new, 1))
    return str(tiny)


# -- recipe values ---------------------------------------------------------------------------

@pytest.mark.parametrize(("old", "new", "message"), [
    ("epochs = 2\n", "epochs = 0\n", "[recipe] epochs must be in [1, 100000], got 0"),
    ("epochs = 2\n", "epochs = 9223372036854775807\n",
     "[recipe] epochs must be in [1, 100000], got 9223372036854775807"),
    ("epochs = 2\nbatch_size = 50", "epochs = 2\nbatch_size = 0",
     "[recipe] batch_size must be >= 1, got 0"),
    ("epochs = 2\nbatch_size = 50\nlr = 0.01", "epochs = 2\nbatch_size = 50\nlr = -0.1",
     "[recipe] lr must be > 0, got -0.1"),
    ("epochs = 2\nbatch_size = 50\nlr = 0.01", "epochs = 2\nbatch_size = 50\nlr = nan",
     "[recipe] lr must be a finite number, got nan (TOML's nan and inf are not allowed)"),
    ("epochs = 2\nbatch_size = 50\nlr = 0.01", "epochs = 2\nbatch_size = 50\nlr = -inf",
     "[recipe] lr must be a finite number, got -inf"),
    ("epochs = 2\n", "epochs = 2\nmomentum = 1.0\n", "[recipe] momentum must be in [0, 1), got 1.0"),
    ("epochs = 2\n", "epochs = 2\nweight_decay = -1e-4\n",
     "[recipe] weight_decay must be >= 0, got -0.0001"),
    ("epochs = 2\n", "epochs = 2\ngamma = 0\n", "[recipe] gamma must be > 0, got 0.0"),
    ("epochs = 2\n", "epochs = 2\nmilestones = [1]\n",
     '[recipe] milestones are used only by schedule = "step", not \'cosine\''),
    ('schedule = "constant"', 'schedule = "step"\nmilestones = [3, 2]',
     "[teacher.recipe] milestones must be increasing epochs in 1..3 (below epochs = 4), got [3, 2]"),
    ('schedule = "constant"', 'schedule = "step"\nmilestones = [4]',
     "[teacher.recipe] milestones must be increasing epochs in 1..3"),
    ("seed = 0\n", "seed = -1\n", "[teacher] seed must be in 0..4294967295, got -1"),
])
def test_recipe_values_are_checked_before_training(tiny: Path, tmp_path: Path, old: str, new: str,
                                                   message: str,
                                                   capsys: pytest.CaptureFixture) -> None:
    path = edited(tiny, old, new)
    err = refused(["run", path], tmp_path, capsys)
    assert f"kdbench: error: {path}: {message}" in err
    assert "warm-up" not in err  # epochs = 0 is about epochs, not about a method's stages


# -- a method's own bounds, the zoo's --------------------------------------------------------

@pytest.mark.parametrize(("old", "new", "message"), [
    ("T = 4.0", "T = -1.0", "[methods.kd] T must be > 0, got -1.0"),
    ("T = 4.0", "T = 0", "[methods.kd] T must be > 0, got 0.0"),
    ("alpha = 0.9", "alpha = 2", "[methods.kd] alpha must be in [0, 1], got 2.0"),
    ("alpha = 0.9", "alpha = 0.9\n[methods.fitnet]\nhint_epochs = -1",
     "[methods.fitnet] hint_epochs must be in [0, 100000], got -1"),
    ("alpha = 0.9", "alpha = 0.9\n[methods.dkd]\nbeta = -8",
     "[methods.dkd] beta must be >= 0, got -8.0"),
    ("alpha = 0.9", "alpha = 0.9\n[methods.vid]\nlambdas = [1, -1]",
     "[methods.vid] lambdas must be >= 0, got -1.0 in [1.0, -1.0]"),
    ("alpha = 0.9", "alpha = 0.9\n[methods.vid]\ninit_var = 1e-6",
     "[methods.vid] init_var must be > eps (1e-05), got 1e-06"),
    ("alpha = 0.9", "alpha = 0.9\n[methods.crd]\nmomentum = 1.5",
     "[methods.crd] momentum must be in [0, 1], got 1.5"),
    ("num_samples = 600", "num_samples = 10", "[dataset] num_samples must be in [100, 1000000], got 10"),
    ("num_samples = 600", "num_samples = 600\ntrain_split = 1.0",
     "[dataset] train_split must be in [0.05, 0.95], got 1.0"),
    ('name = "cnn1d_small"', 'name = "cnn1d_small"\nchannels = 0',
     "[student] channels must be >= 1, got 0"),
    ('model = "cnn1d"', 'model = { name = "cnn1d", depth = 0 }',
     "[teacher] [model] depth must be >= 1, got 0"),
])
def test_method_and_zoo_bounds(tiny: Path, tmp_path: Path, old: str, new: str, message: str,
                               capsys: pytest.CaptureFixture) -> None:
    path = edited(tiny, old, new)
    err = refused(["run", path], tmp_path, capsys)
    assert f"kdbench: error: {path}: {message}" in err


# -- seeds, rows and the number of runs -------------------------------------------------------

@pytest.mark.parametrize(("seeds", "message"), [
    ("[0, 0, 1]", "seeds lists seed 0 twice"),
    ("[-1, 0]", "seeds must be in 0..4294967295, got -1"),
    ("[]", "seeds must name at least one seed"),
    ("0", "seeds must be a count in 1..100000 (seeds 0..N-1) or a list of seeds, got 0"),
    ("-3", "got -3"),
    ("1000000000000", "got 1000000000000"),
    ('"five"', "seeds must be int, got 'five'"),
])
def test_bad_seeds_in_the_file(tiny: Path, tmp_path: Path, seeds: str, message: str,
                               capsys: pytest.CaptureFixture) -> None:
    path = edited(tiny, "seeds = 2", f"seeds = {seeds}")
    assert message in refused(["run", path], tmp_path, capsys)


@pytest.mark.parametrize(("flags", "message"), [
    (["--seeds", "0"], "--seeds must be in 1..100000, got 0"),
    (["--seeds", "-2"], "--seeds must be in 1..100000, got -2"),
    (["--seeds", "10000000000"], "--seeds must be in 1..100000, got 10000000000"),
    (["--methods", "kd,kd"], "--methods names 'kd' twice"),
    (["--methods", ","], "--methods names no row"),
    (["--seeds", "100000"], "this sweep plans 200,001 runs (1 teacher + 2 rows × 100,000 seeds), "
     "more than the ceiling of 2,000; use fewer seeds or --methods, or pass --max-runs 200001"),
    (["--seeds", "3", "--max-runs", "6"], "plans 7 runs"),
    (["--until-decided", "--max-seeds", "5000"], "this sweep plans 10,001 runs (1 teacher + 2 "
     "rows × 5,000 seeds)"),
    (["--max-runs", "0"], "--max-runs must be at least 1, got 0"),
])
def test_bad_flags(tiny: Path, tmp_path: Path, flags: list[str], message: str,
                   capsys: pytest.CaptureFixture) -> None:
    assert message in refused(["run", str(tiny), *flags], tmp_path, capsys)


def test_the_ceiling_counts_until_decided_at_max_seeds(tiny: Path, plugins) -> None:
    spec = load(str(tiny), plugins)
    check_run_count(spec, 3, 7)  # 1 + 2 × 3: exactly at the ceiling is allowed
    with pytest.raises(KdbenchError, match=r"plans 9 runs .* --max-runs 9 "):
        check_run_count(spec, 4, 8)


# -- the name, --out, and files that are not benchmark files ----------------------------------

@pytest.mark.parametrize("name", ["../../x", "/tmp/abs", "a/b", "x" * 101, "", ".hidden", "a b",
                                  "..", "a\\\\b"])
def test_the_name_must_be_a_safe_file_name(tiny: Path, tmp_path: Path, name: str,
                                           capsys: pytest.CaptureFixture) -> None:
    path = edited(tiny, 'name = "tiny"', f'name = "{name}"')
    err = refused(["run", path, "--out", str(tmp_path / "out")], tmp_path, capsys)
    assert "is not a safe file name: use 1 to 100 letters, digits, '.', '_' or '-', starting " \
           "with a letter or digit" in err
    assert not (tmp_path / "out").exists() and not Path("/tmp/abs.md").exists()


def test_a_file_name_that_is_not_a_safe_name_needs_name(tiny: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    odd = tmp_path / "my bench.toml"
    odd.write_text(tiny.read_text().replace('name = "tiny"\n', ""))
    err = refused(["run", str(odd)], tmp_path, capsys)
    assert "the file name 'my bench' is not a safe benchmark name; set `name = \"...\"`" in err


def test_out_must_be_a_writable_directory(tiny: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture) -> None:
    # Tests run as root, where a read-only mode does not stop writes: a regular file in the
    # way makes a directory that cannot be created or written.
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    err = refused(["run", str(tiny), "--out", str(blocker)], tmp_path, capsys)
    assert f"--out {blocker} is a file, not a directory" in err
    err = refused(["run", str(tiny), "--out", str(blocker / "sub")], tmp_path, capsys)
    assert f"--out {blocker / 'sub'}: cannot create the directory (Not a directory)" in err
    err = refused(["leaderboard", str(tiny), "--out", str(blocker)], tmp_path, capsys)
    assert "--out" in err and "is a file" in err
    err = refused(["compare", str(tiny), str(tiny), "--out", str(blocker / "sub")], tmp_path,
                  capsys)
    assert "cannot create the directory" in err
    assert blocker.read_text() == "x"


@pytest.mark.parametrize("name", ["../x", "/tmp/abs", "a/b", ""])
def test_the_compare_name_must_be_a_safe_file_name(tiny: Path, tmp_path: Path, name: str,
                                                   capsys: pytest.CaptureFixture) -> None:
    err = refused(["compare", str(tiny), str(tiny), "--out", str(tmp_path / "out"), "--name",
                   name], tmp_path, capsys)
    assert f"--name {name!r} is not a safe file name" in err
    assert not (tmp_path / "x.json").exists() and not (tmp_path / "out").exists()


def test_a_missing_out_is_created(tmp_path: Path) -> None:
    out = tmp_path / "new" / "dir"
    writable_dir(out)
    assert out.is_dir() and list(out.iterdir()) == []


@pytest.mark.parametrize(("content", "message"), [
    (b'name = "caf\xe9"\n', "not UTF-8 text (byte 0xe9 at offset 11); save the benchmark file "
                            "as UTF-8"),
    (b"\xff\xfe\x00\x00", "not UTF-8 text (byte 0xff at offset 0)"),
    (b"name = \n", "not valid TOML: "),
    (b"[a]\nx = 1\n[a]\n", "not valid TOML: "),
    (b"\"a\\u0007b\" = 1\n", "key 'a\\x07b' has a control character"),
    (b"[methods.\"a\\nb\"]\nT = 1.0\n", "[methods] key 'a\\nb' has a control character"),
])
def test_files_that_are_not_benchmark_files(tmp_path: Path, content: bytes, message: str,
                                            capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(content)
    err = refused(["run", str(path)], tmp_path, capsys)
    assert f"{path}: {message}" in err


def test_a_directory_or_an_unreadable_path(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "benchmarks.toml"
    folder.mkdir()
    err = refused(["run", str(folder)], tmp_path, capsys)
    assert f"{folder} is a directory; give a benchmark .toml file in it" in err
    # Unreadable as root too: the kernel refuses to read this file.
    err = refused(["run", "/proc/self/mem"], tmp_path, capsys)
    assert "/proc/self/mem: cannot read the benchmark file: Input/output error" in err


KD = "[methods.kd]\nT = 4.0\nalpha = 0.9"
TEACHER_RECIPE = '[teacher.recipe]\nepochs = 4\nbatch_size = 50\nlr = 0.01\nschedule = "constant"'


@pytest.mark.parametrize(("edits", "message"), [
    ([('[dataset]\nname = "mnist1d"\nnum_samples = 600', ""),
      ('name = "tiny"', 'name = "tiny"\ndataset = 3')],
     "dataset must be a name or a table with `name`"),
    ([(KD, ""), ('name = "tiny"', 'name = "tiny"\nmethods = 5')],
     "methods must be a table ([methods]), got 5"),
    ([(KD, '[methods]\nkd = "x"')], "[methods.kd] must be a table of the method's parameters"),
    ([(TEACHER_RECIPE, ""), ("[teacher]\n", "[teacher]\nrecipe = 1\n")],
     "[teacher] recipe must be a table ([teacher.recipe]), got 1"),
    ([('metrics = ["top1", "agreement"]', 'metrics = "top1"')],
     "metrics must be a list of str, got 'top1'"),
    ([('metrics = ["top1", "agreement"]', 'metrics = ["top1", "top1"]')],
     "metrics lists 'top1' twice"),
    ([("[recipe]\nepochs = 2\nbatch_size = 50\nlr = 0.01\n", ""),
      ('name = "tiny"', 'name = "tiny"\nrecipe = [1]')], "recipe must be a table ([recipe]), got [1]"),
    ([('name = "tiny"', "name = 3")], "name must be str, got 3"),
    ([('[student]\nname = "cnn1d_small"', "[student]\nchannels = 8")],
     "student must be a name or a table with `name`"),
    ([("[methods.kd]", '[methods.kd]\nmethod = ["kd"]')], "[methods.kd] method must be str, got ['kd']"),
    ([("[methods.kd]", "[methods.baseline]\nmethod = \"kd\"")],
     "[methods.baseline]: 'baseline' names the leaderboard's own baseline row"),
    ([("[methods.kd]", '[methods."kd,2"]\nmethod = "kd"')], "row name 'kd,2' must be 1 to 100"),
])
def test_wrong_types_at_any_level(tiny: Path, tmp_path: Path, edits: list[tuple[str, str]],
                                  message: str, capsys: pytest.CaptureFixture) -> None:
    for old, new in edits:
        path = edited(tiny, old, new)
    assert message in refused(["run", path], tmp_path, capsys)


def test_the_module_entry_point_refuses_too(tiny: Path, tmp_path: Path) -> None:
    """``python -m kdbench.cli``, as a user runs it: exit 2, one line, nothing trained."""
    path = edited(tiny, "T = 4.0", "T = -1.0")
    done = subprocess.run([sys.executable, "-m", "kdbench.cli", "run", path, "--tracking-uri",
                           f"sqlite:///{tmp_path / 'ml.db'}", "--cache-dir", str(tmp_path / "c")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr == f"kdbench: error: {path}: [methods.kd] T must be > 0, got -1.0\n"
    assert not (tmp_path / "c" / "teachers").exists() and _runs(tmp_path / "ml.db") == 0


def test_the_builtin_benchmarks_pass(plugins) -> None:
    for name in ("mnist1d", "digits"):
        spec = load(name, plugins)
        assert spec.name == name and len(spec.seeds) == 5


# -- the bounds mechanism of kdbench.params ---------------------------------------------------

@dataclass(frozen=True)
class P:
    T: float = bounded(4.0, low=0, low_open=True)
    alpha: float = bounded(0.5, low=0, high=1)
    steps: int = field(default=3, metadata={"range": (1, None)})
    widths: tuple[int, ...] = bounded((8, 16), low=1)
    index: int | None = bounded(None, low=0)
    rate: float = bounded(0.5, low=0, high=1, low_open=True, high_open=True)

    def __post_init__(self) -> None:
        if self.steps > 10 and self.alpha == 0:
            raise ValueError("steps above 10 need alpha > 0")


def test_ranges_in_words() -> None:
    assert str(Range(0, None, low_open=True)) == "> 0"
    assert str(Range(1, 100000)) == "in [1, 100000]"
    assert str(Range(0, 1, high_open=True)) == "in [0, 1)"
    assert str(Range(None, 2.5)) == "<= 2.5"
    assert 0.0 not in Range(0, None, low_open=True) and 1e-300 in Range(0, None, low_open=True)


@pytest.mark.parametrize(("values", "message"), [
    ({"T": -1}, "[methods.x] T must be > 0, got -1.0"),
    ({"alpha": 1.5}, "[methods.x] alpha must be in [0, 1], got 1.5"),
    ({"steps": 0}, "[methods.x] steps must be >= 1, got 0"),
    ({"widths": [8, 0]}, "[methods.x] widths must be >= 1, got 0 in [8, 0]"),
    ({"index": -1}, "[methods.x] index must be >= 0, got -1"),
    ({"rate": 1}, "[methods.x] rate must be in (0, 1), got 1.0"),
    ({"T": float("nan")}, "[methods.x] T must be a finite number, got nan"),
    ({"T": 10**400}, "[methods.x] T must be float, got 1000000000"),
    ({"steps": 11, "alpha": 0}, "[methods.x] steps above 10 need alpha > 0"),
])
def test_build_enforces_declared_ranges(values: dict, message: str) -> None:
    with pytest.raises(SpecError) as error:
        build(P, values, where="[methods.x] ")
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)


def test_in_range_values_and_none_pass() -> None:
    assert build(P, {"T": 1e-9, "alpha": 1, "index": None, "widths": []}) == \
        P(T=1e-9, alpha=1.0, widths=())


def test_a_default_out_of_range_is_the_plugin_s_bug_and_says_so() -> None:
    @dataclass(frozen=True)
    class Q:
        k: int = bounded(0, low=1)

    with pytest.raises(SpecError, match=r"k must be >= 1, got 0 \(its default\)"):
        build(Q, {})


def test_a_required_parameter_that_is_missing_is_named() -> None:
    @dataclass(frozen=True)
    class R:
        path: str
        n: int = 1

    with pytest.raises(SpecError, match=r"^\[teacher\] missing parameter 'path', which has no "
                                        r"default; set it$"):
        build(R, {"n": 2}, where="[teacher] ")
    assert build(R, {"path": "x"}) == R("x")
