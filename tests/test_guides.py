"""The plugin guides (docs/plugins/), followed word for word in a fresh virtual environment.

The set-up is docs/plugins/README.md's, with two substitutions because the test machine has
no network: the new environment is created without pip and reaches this interpreter's
packages (torch, kdbench's dependencies, pip, pytest) through a ``.pth`` file instead of
downloading them, and pip runs offline (``PIP_NO_INDEX``) without build isolation. kdbench
itself is installed into it from this checkout (``pip install --no-deps -e``), and every
command then runs with the environment's ``bin`` first on ``PATH`` and no ``PYTHONPATH``,
so ``kdbench`` and ``python`` resolve to the fresh environment as a user's would.

Each guide's commands are read from the guide (the ``bash`` block after
``<!-- guide-test: TAG -->``) and run with bash, so the guide and the test cannot drift.
The default run does the cheap walk-through (``kdbench new method``, install, the
conformance test); ``-m slow`` runs every guide's example end to end (minutes).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GUIDES = REPO / "docs" / "plugins"
KINDS = ("method", "dataset", "model", "teacher", "metric", "executor")
SMOKE = {"method": ("lskd", "lskd"), "dataset": ("breast_cancer", "kd"),
         "model": ("dscnn", "at"), "teacher": ("ncm", "dist"),
         "metric": ("calibration", "dkd"), "executor": ("futures", "kd")}
"""Per kind: the example's benchmark name, and a row its smoke board must show."""


def block(guide: Path, tag: str) -> str:
    """The ``bash`` block right after ``<!-- guide-test: TAG -->`` in ``guide``."""
    text = guide.read_text(encoding="utf-8")
    marker = f"<!-- guide-test: {tag} -->"
    assert text.count(marker) == 1, f"{guide.name} must mark one block {marker}"
    found = re.match(r"\s*```bash\n(.*?)```", text.split(marker, 1)[1], re.S)
    assert found, f"{guide.name}: no ```bash block after {marker}"
    return found.group(1)


@dataclass(frozen=True)
class Fresh:
    """A fresh virtual environment with kdbench installed from this checkout."""

    root: Path
    env: dict[str, str]

    def bash(self, script: str, cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
        """``script`` as bash runs it (stopping at the first failing command), output merged."""
        return subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=cwd, env=self.env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=timeout)

    def checkout(self, name: str) -> Path:
        """A scratch folder holding a copy of the checkout's examples (the guides' commands
        run from the checkout's root and copy an example out of it, to ``../``)."""
        folder = self.root / name / "checkout"
        shutil.copytree(REPO / "examples", folder / "examples", ignore=shutil.ignore_patterns(
            "mlflow.db", "mlruns", "leaderboard", "*.egg-info", ".pytest_cache", "__pycache__",
            ".benchmarks"))
        return folder


@contextlib.contextmanager
def installed(fresh: Fresh, distribution: str) -> Iterator[None]:
    """Uninstall ``distribution`` from the fresh environment afterwards: the walk-throughs
    install the same name, which a second `kdbench new` would refuse as registered."""
    try:
        yield
    finally:
        fresh.bash(f"pip uninstall -q -y {distribution}", cwd=fresh.root)


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Fresh:
    root = tmp_path_factory.mktemp("guides")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                                "['purelib'])"], check=True, capture_output=True, text=True,
                               env={"PATH": os.environ["PATH"]}).stdout.strip())
    # Stands in for `pip install torch ...` and kdbench's dependencies: this interpreter's
    # packages, added after the environment's own (the name sorts last), so that what is
    # installed into the fresh environment wins.
    ours = sysconfig.get_paths()["purelib"]
    (site / "zzz-kdbench-test-packages.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    pip = venv / "bin" / "pip"
    pip.write_text('#!/bin/sh\nexec "$(dirname "$0")/python" -m pip "$@"\n')
    pip.chmod(0o755)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "MLFLOW_TRACKING_URI", "KDBENCH_DATA",
                        "KDBENCH_DISABLE_PLUGINS", "PYTHONHOME")}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}", VIRTUAL_ENV=str(venv),
               KDBENCH_CACHE=str(root / "cache"), PIP_NO_INDEX="1",
               # pip reads this variable inverted: "0" turns build isolation off, which would
               # otherwise download setuptools into a throwaway environment.
               PIP_NO_BUILD_ISOLATION="0", PIP_DISABLE_PIP_VERSION_CHECK="1")
    made = Fresh(root, env)
    installed = made.bash(f"pip install --no-deps -e {REPO}", cwd=root, timeout=300)
    assert installed.returncode == 0, installed.stdout[-3000:]
    # Where the fresh environment finds kdbench, without importing it (and torch).
    where = made.bash('python -c "import importlib.util as u, importlib.metadata as m; '
                      "print(u.find_spec('kdbench').origin, u.find_spec('kdbench_zoo').origin, "
                      "m.distribution('kdbench').locate_file(''))\"", cwd=root)
    kdbench_file, zoo_file, dist = where.stdout.split()
    assert Path(kdbench_file) == REPO / "kdbench" / "__init__.py", where.stdout
    assert Path(zoo_file).is_relative_to(REPO), where.stdout
    assert Path(dist).resolve().is_relative_to(venv.resolve()), where.stdout  # its own install
    return made


def test_kdbench_new_method_installs_and_passes_the_conformance_kit(fresh: Fresh) -> None:
    """The README's `kdbench new` walk-through up to its install, then the generated
    package's contract test (the full block, smoke run included, runs with -m slow)."""
    lines = block(GUIDES / "README.md", "new").splitlines()
    assert lines[0] == "kdbench new method my-kd && cd my-kd" and lines[1] == "pip install -e ."
    scratch = fresh.root / "new-quick"
    scratch.mkdir()
    with installed(fresh, "kdbench-my-kd"):
        done = fresh.bash("\n".join([*lines[:2],
                                     "python -m pytest -q -p no:cacheprovider -k contract"]),
                          scratch)
    assert done.returncode == 0, done.stdout[-4000:]
    assert "kdbench: wrote my-kd/ (kdbench-my-kd: method 'my-kd')" in done.stdout
    assert re.search(r"\b1 passed, 1 deselected\b", done.stdout), done.stdout[-2000:]


@pytest.mark.slow
def test_kdbench_new_method_runs_word_for_word(fresh: Fresh) -> None:
    scratch = fresh.root / "new-full"
    scratch.mkdir()
    with installed(fresh, "kdbench-my-kd"):
        done = fresh.bash(block(GUIDES / "README.md", "new"), scratch)
    assert done.returncode == 0, done.stdout[-4000:]
    assert "2 passed" in done.stdout
    assert "my-kd-smoke:" in done.stdout and "SMOKE TEST" in done.stdout
    assert re.search(r"^\d+\s+my-kd\s", done.stdout, re.M), done.stdout[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_each_guide_runs_word_for_word(fresh: Fresh, kind: str) -> None:
    """Copy the example, install it, run its own tests and a smoke run of its benchmark."""
    checkout = fresh.checkout(kind)
    done = fresh.bash(block(GUIDES / f"{kind}.md", "try"), checkout)
    assert done.returncode == 0, done.stdout[-5000:]
    bench, row = SMOKE[kind]
    assert re.search(r"=* \d+ passed", done.stdout) and " failed" not in done.stdout, \
        done.stdout[-3000:]
    assert f"{bench}-smoke:" in done.stdout and "SMOKE TEST" in done.stdout, done.stdout[-3000:]
    assert re.search(rf"^\d+\s+{re.escape(row)}\s", done.stdout, re.M), done.stdout[-3000:]


# What the guides promise without running anything ----------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_each_guide_has_its_example_package(kind: str) -> None:
    """The example a guide copies is a package with a `kdbench` entry point, its benchmark
    file and a test, and the guide's block names that benchmark."""
    example = REPO / "examples" / kind
    project = tomllib.loads((example / "pyproject.toml").read_text())
    [(_plugin, module)] = project["project"]["entry-points"]["kdbench"].items()
    assert (example / f"{module}.py").is_file()
    bench, _ = SMOKE[kind]
    assert (example / f"{bench}.toml").is_file() and list((example / "tests").glob("test_*.py"))
    commands = block(GUIDES / f"{kind}.md", "try")
    assert f"cp -r examples/{kind} " in commands and f"kdbench run {bench}.toml --smoke" in commands
    assert f"[{kind}.md]({kind}.md)" in (GUIDES / "README.md").read_text()


def test_the_method_guide_quotes_the_refusal_kdbench_prints() -> None:
    from kdbench.contract import undeclared_teacher

    line = f"kdbench: error: {undeclared_teacher('[methods.mine] mine', 'logits')}"
    assert line in (GUIDES / "method.md").read_text()


def test_the_readme_links_the_guides() -> None:
    assert "(docs/plugins/README.md)" in (REPO / "README.md").read_text()
