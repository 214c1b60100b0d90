"""A method that reads the teacher without declaring it is refused before anything trains.

``Method.teacher_needs`` defaults to the empty set (the baseline's "no teacher"), so a method
whose author forgot it gets ``t = None`` and would fail every run on its first step. Planning
(``kdbench run``, ``--dry-run``) and the conformance kit both refuse it in one line that says
what to set.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch.nn.functional as F

import kdbench
from kdbench import conformance
from kdbench.errors import KdbenchError
from kdbench.method import Method
from kdbench.plugins import Plugins


class _Forgot(Method):
    """KD whose author forgot ``teacher_needs``: its loss reads ``t.logits``."""

    name = "forgot"

    def loss(self, s, t, y, idx):
        return {"ce": F.cross_entropy(s.logits, y),
                "kd": F.mse_loss(s.logits, t.logits)}


class _ForgotEmbedding(Method):
    name = "forgot-embedding"
    needs = frozenset({"logits", "embedding"})

    def loss(self, s, t, y, idx):
        return {"ce": F.cross_entropy(s.logits, y), "e": (s.embedding - t.embedding).square().mean()}


class _NoTeacher(Method):
    """Declares no teacher and checks for one: legitimate, must not be refused."""

    name = "no-teacher"

    def loss(self, s, t, y, idx):
        terms = {"ce": F.cross_entropy(s.logits, y)}
        if t is not None:
            terms["kd"] = F.mse_loss(s.logits, t.logits)
        return terms


class _Plugin:
    @staticmethod
    @kdbench.hookimpl
    def kdbench_methods(register) -> None:
        for method in (_Forgot, _ForgotEmbedding, _NoTeacher):
            register(method.name, method)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def forgetful() -> Plugins:
    return Plugins.load(strict=True, extra=[("forgetful", _Plugin)])


@pytest.mark.parametrize(("name", "tap"), [("forgot", "logits"), ("forgot-embedding", "embedding")])
def test_the_conformance_kit_names_the_missing_declaration(forgetful: Plugins, name: str,
                                                           tap: str) -> None:
    with pytest.raises(conformance.Nonconformance) as caught:
        conformance.check_method(name, plugins=forgetful)
    message = str(caught.value)
    assert "\n" not in message
    assert f"reads the teacher's {tap!r} tap (t.{tap}) but declares no teacher" in message
    assert f"teacher_needs = frozenset({{{tap!r}}})" in message


def test_a_method_that_checks_for_no_teacher_conforms(forgetful: Plugins) -> None:
    assert conformance.check_method("no-teacher", conformance.PAIRS[:1], plugins=forgetful,
                                    steps=5).checked


def test_planning_refuses_the_row_before_anything_trains(forgetful: Plugins, tiny: Path,
                                                         cache_dir: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from kdbench import sweep as sweeps
    from kdbench import train
    from kdbench.spec import load

    monkeypatch.setattr(train, "plugins", lambda: forgetful)  # the process's plugins

    tiny.write_text(tiny.read_text().replace("[methods.kd]", "[methods.mine]\nmethod = \"forgot\"\n\n"
                                             "[methods.ok]\nmethod = \"no-teacher\"\n\n[methods.kd]"))
    with pytest.raises(KdbenchError) as caught:
        sweeps.plan(load(str(tiny), forgetful), forgetful, cache_dir)
    message = str(caught.value)
    assert message.startswith("[methods.mine] forgot reads the teacher's 'logits' tap"), message
    assert "\n" not in message
    # Without the broken row the plan goes through: the check has no false alarm.
    spec = load(str(tiny), forgetful).with_options(methods=["ok", "kd"])
    assert sweeps.plan(spec, forgetful, cache_dir).runs
