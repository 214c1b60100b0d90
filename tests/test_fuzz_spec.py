"""Property: whatever a benchmark file holds, :func:`kdbench.spec.load` returns a Spec or raises
a one-line :class:`~kdbench.errors.KdbenchError`, never a traceback.

The documents are the real benchmark files (``leaderboard/*.toml`` and the tests' tiny one),
mutated: keys dropped, added or replaced by values of any TOML type (huge, negative, nan, inf,
dates, random strings, nested tables and arrays), and random or corrupted bytes.
"""

from __future__ import annotations

import datetime
import json
import math
import tomllib
from pathlib import Path
from typing import Any

import pytest
from conftest import TINY
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kdbench.errors import KdbenchError
from kdbench.spec import Spec, load

ROOT = Path(__file__).resolve().parent.parent
BASES = {"tiny": TINY, **{p.stem: p.read_text() for p in sorted((ROOT / "leaderboard").glob("*.toml"))}}
PARSED = {name: tomllib.loads(text) for name, text in BASES.items()}

# Names the loader knows, so that mutations reach past the first unknown-key check.
KEYS = sorted({"name", "description", "seeds", "metric", "metrics", "dataset", "teacher",
               "student", "recipe", "methods", "executor", "provider", "model", "seed", "path",
               "epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay", "schedule",
               "milestones", "gamma", "stage_budget", "method", "T", "alpha", "beta", "num_samples",
               "train_split", "channels", "depth", "hidden", "workers", "lambdas", "init_var",
               "eps", "hint_epochs", "guided", "kd", "fitnet", "vid", "test_size"})
WORDS = ["top1", "agreement", "kd", "fitnet", "mnist1d", "digits", "cnn1d", "cnn1d_small",
         "cnn2d", "mlp", "train", "checkpoint", "serial", "process", "sgd", "step", "extra",
         "../x", "/abs", "", " ", "a,b", "baseline", "x" * 120]

SETTINGS = settings(max_examples=200, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])

scalars = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, -1, 2, 3, 100, 2**31, 2**32, 2**63 - 1, -(2**63)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, 0.5, 1.0, 1e308, 5e-324]),
    st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=12),
    st.sampled_from(WORDS),
    st.booleans(),
    st.dates(), st.datetimes(), st.times(),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner, max_size=4),
    max_leaves=10,
)


def toml_value(value: Any) -> str:
    """``value`` as a TOML value (inline tables and arrays), whatever its type."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


def toml_key(key: str) -> str:
    return json.dumps(key, ensure_ascii=False)


def toml_document(doc: dict[str, Any]) -> str:
    return "".join(f"{toml_key(k)} = {toml_value(v)}\n" for k, v in doc.items())


def _containers(value: Any, path: tuple = ()) -> list[tuple]:
    """Paths to every table and array in ``value``, itself included."""
    found = [path] if isinstance(value, dict | list) else []
    items = value.items() if isinstance(value, dict) else enumerate(value) \
        if isinstance(value, list) else ()
    for key, item in items:
        found += _containers(item, (*path, key))
    return found


def _at(doc: Any, path: tuple) -> Any:
    for key in path:
        doc = doc[key]
    return doc


@st.composite
def mutated(draw: st.DrawFn) -> str:
    """A real benchmark document with one to four random mutations, as TOML text."""
    doc = json.loads(json.dumps(PARSED[draw(st.sampled_from(sorted(PARSED)))]))
    for _ in range(draw(st.integers(1, 4))):
        container = _at(doc, draw(st.sampled_from(_containers(doc))))
        keys = list(container) if isinstance(container, dict) else list(range(len(container)))
        operation = draw(st.sampled_from(["drop", "replace", "replace", "add"]))
        if operation == "add" or not keys:
            if isinstance(container, dict):
                container[draw(st.sampled_from(KEYS) | st.text(max_size=6))] = draw(values)
            else:
                container.append(draw(values))
            continue
        key = draw(st.sampled_from(keys))
        if operation == "drop":
            del container[key]
        else:
            container[key] = draw(values)
    return toml_document(doc)


def _loads_or_refuses(path: Path, plugins: Any) -> None:
    try:
        spec = load(str(path), plugins)
    except KdbenchError as error:
        assert "\n" not in str(error), str(error)
        return
    assert isinstance(spec, Spec)


def test_the_documents_serialise_faithfully() -> None:
    """The strategy's writer round-trips the real files, so mutations start from them."""
    for doc in PARSED.values():
        assert tomllib.loads(toml_document(doc)) == doc


@SETTINGS
@given(text=mutated())
def test_mutated_benchmark_files_load_or_refuse(text: str, tmp_path: Path, plugins: Any) -> None:
    path = tmp_path / "fuzz.toml"
    path.write_text(text, encoding="utf-8")
    _loads_or_refuses(path, plugins)


@SETTINGS
@given(data=st.one_of(
    st.binary(max_size=300),
    st.tuples(st.sampled_from(sorted(BASES)), st.integers(0, 10**6), st.binary(min_size=1, max_size=8),
              st.sampled_from(["insert", "overwrite", "truncate"])),
))
def test_random_and_corrupted_bytes_load_or_refuse(data: Any, tmp_path: Path, plugins: Any) -> None:
    if isinstance(data, tuple):
        base, at, chunk, how = data
        raw = BASES[base].encode()
        at %= len(raw)
        raw = raw[:at] + chunk + raw[at:] if how == "insert" else \
            raw[:at] + chunk + raw[at + len(chunk):] if how == "overwrite" else raw[:at]
        data = raw
    path = tmp_path / "fuzz.toml"
    path.write_bytes(data)
    _loads_or_refuses(path, plugins)


@SETTINGS
@given(seeds=st.none() | st.integers(-(2**40), 2**40),
       methods=st.none() | st.lists(st.sampled_from(["kd", "fitnet", "nope", "", "kd "]), max_size=3))
def test_options_apply_or_refuse(seeds: int | None, methods: list[str] | None, plugins: Any) -> None:
    spec = load("mnist1d", plugins)
    try:
        chosen = spec.with_options(seeds=seeds, methods=methods)
    except KdbenchError as error:
        assert "\n" not in str(error)
        return
    assert len(set(chosen.seeds)) == len(chosen.seeds) >= 1
    assert len({m.label for m in chosen.methods}) == len(chosen.methods)


@pytest.mark.parametrize("name", sorted(BASES))
def test_the_unmutated_files_load(name: str, tmp_path: Path, plugins: Any) -> None:
    dataset = PARSED[name]["dataset"]["name"]
    if dataset not in plugins.table("datasets"):  # a file for a dataset plugin not installed
        pytest.skip(f"{name}: no dataset plugin {dataset!r} installed")
    path = tmp_path / f"{name}.toml"
    path.write_text(BASES[name])
    assert load(str(path), plugins).name == name


@pytest.mark.parametrize("line", [
    "seeds = " + "1" * 5000,                     # more digits than Python parses
    "seeds = 0x" + "f" * 5000,                   # parsed, and more digits than repr prints
    "seeds = " + "[" * 3000 + "]" * 3000,        # deeper than the recursion limit
    "seeds = " + "{a = " * 3000 + "1" + "}" * 3000,
    "seeds = 1e99999",                           # inf, spelled as a number
    "seeds = 9223372036854775808",               # 2**63: past TOML's 64-bit integers
])
def test_pathological_values_are_one_line_errors(line: str, tiny: Path, plugins: Any) -> None:
    tiny.write_text(tiny.read_text().replace("seeds = 2", line))
    with pytest.raises(KdbenchError) as error:
        load(str(tiny), plugins)
    assert "\n" not in str(error.value) and len(str(error.value)) < 400
