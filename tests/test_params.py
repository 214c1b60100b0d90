from dataclasses import dataclass
from typing import Literal

import pytest

from kdbench.errors import SpecError
from kdbench.params import as_dict, build


@dataclass(frozen=True)
class P:
    T: float = 4.0
    steps: int = 3
    mode: Literal["a", "b"] = "a"
    sizes: tuple[int, ...] = (1, 2)
    flag: bool = False


def test_defaults_and_overrides() -> None:
    p = build(P, {"T": 2, "sizes": [3, 4, 5], "mode": "b"})
    assert p == P(T=2.0, sizes=(3, 4, 5), mode="b")
    assert isinstance(p.T, float)
    assert as_dict(p) == {"T": 2.0, "steps": 3, "mode": "b", "sizes": [3, 4, 5], "flag": False}


def test_unknown_key_suggests_the_close_one() -> None:
    with pytest.raises(SpecError, match=r"unknown parameter 'temp'.*allowed: T, steps"):
        build(P, {"temp": 1.0})
    with pytest.raises(SpecError, match=r"'step'.*did you mean 'steps'"):
        build(P, {"step": 1})


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("T", "4", "float"), ("steps", 2.5, "int"), ("steps", True, "int"),
    ("mode", "c", "one of 'a', 'b'"), ("sizes", [1, "x"], "a list of int"), ("flag", 1, "bool"),
])
def test_wrong_types_say_what_is_expected(key: str, value: object, expected: str) -> None:
    with pytest.raises(SpecError) as error:
        build(P, {key: value}, where="[methods.x] ")
    assert str(error.value) == f"[methods.x] {key} must be {expected}, got {value!r}"
