"""The CRD pair resnet32 → resnet8 through the real method plugins: one loss step of KD, AT
and FitNet (its hint stage and main loss) on a CIFAR-100-shaped batch, as the training loop
wires them: shapes, the method's check and modules, the taps, a finite loss whose gradient
reaches the student."""

from __future__ import annotations

import math

import pytest
import torch

from kdbench.data import DataInfo
from kdbench.plugins import Plugins
from kdbench.taps import Tapped, shapes

INFO = DataInfo((3, 32, 32), 100, 50000)


pytestmark = pytest.mark.usefixtures("one_thread")


def model(plugins: Plugins, name: str) -> torch.nn.Module:
    entry = plugins.entry("students", name)
    return entry.factory(entry.make_params({}), INFO)


@pytest.mark.parametrize("method_name", ["kd", "at", "fitnet"])
def test_one_loss_step_on_resnet32_to_resnet8(plugins: Plugins, method_name: str) -> None:
    torch.manual_seed(0)
    student, teacher = model(plugins, "resnet8"), model(plugins, "resnet32").eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    entry = plugins.entry("methods", method_name)
    method = entry.factory(entry.make_params({}))
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([3, 97])
    s_shapes, t_shapes = shapes(student, x), shapes(teacher, x)
    assert s_shapes.stages == ((16, 32, 32), (32, 16, 16), (64, 8, 8))
    assert t_shapes.stages == s_shapes.stages  # the same widths: connectors are 1×1
    method.check(s_shapes, t_shapes)
    extra = method.build(s_shapes, t_shapes, INFO)
    s_tapped = Tapped(student, method.needs)
    t_tapped = Tapped(teacher, method.teacher_taps())
    losses = [stage.loss for stage in method.stages()] + [method.loss]
    for loss in losses:
        student.zero_grad()
        with torch.no_grad():
            t = t_tapped(x)
        terms = loss(s_tapped(x), t, y, torch.tensor([0, 1]))
        total = sum(terms.values())
        assert math.isfinite(total.item()) and total.item() > 0, terms
        total.backward()
        grads = [p.grad for p in student.parameters() if p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads)
    assert all(p.grad is None for p in teacher.parameters())
    if method_name == "fitnet":
        assert len(losses) == 2 and extra is not None
