"""Teachers that are not kdbench-trained networks, and retrieval metrics (PKT, seed 000)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score
from sklearn.neighbors import NearestNeighbors

from kdbench import sweep as sweeps
from kdbench import train
from kdbench.cli import main
from kdbench.errors import Incompatible, KdbenchError
from kdbench.metrics import Database, Metric, Outputs
from kdbench.retrieval import MAPParams, PrecisionParams, mean_ap, precision
from kdbench.spec import load
from kdbench.taps import shapes, tap_points

DIGITS = """
name = "nonneural"
seeds = 2
metric = "map"
metrics = ["map", "prec10", "top1", "agreement"]

[dataset]
name = "digits"

[teacher]
{teacher}

[student]
name = "mlp"
hidden = [32, 16]

[recipe]
epochs = 1
batch_size = 64

[executor]
name = "serial"

{methods}
"""
SKLEARN = """provider = "sklearn"
steps = ["pca", "logistic_regression"]
[teacher.options.pca]
n_components = {n}
[teacher.options.logistic_regression]
max_iter = 500"""


def _bench(tmp_path: Path, teacher: str, methods: str = "[methods.pkt]") -> Path:
    path = tmp_path / "nonneural.toml"
    path.write_text(DIGITS.format(teacher=teacher, methods=methods))
    return path


# Retrieval metrics against an independent computation ----------------------------------------


def _reference(queries: np.ndarray, q_y: np.ndarray, base: np.ndarray, b_y: np.ndarray,
               metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Per query: the relevance of the ranked database (scikit-learn's brute-force neighbours,
    as the authors' ``Database``) and the 11-point interpolated AP, written with NumPy."""
    nn = NearestNeighbors(n_neighbors=len(base), algorithm="brute", metric=metric).fit(base)
    _, order = nn.kneighbors(queries)
    relevant = (b_y[order] == q_y[:, None]).astype(float)
    aps = []
    for rel, y in zip(relevant, q_y, strict=True):
        precision = np.cumsum(rel) / np.arange(1, len(rel) + 1)
        interpolated = np.maximum.accumulate(precision[::-1])[::-1]
        recall = np.cumsum(rel) / np.sum(b_y == y)
        aps.append(np.mean([interpolated[np.argmin(np.abs(recall - level))]
                            for level in np.arange(0, 1.01, 0.1)]))
    return relevant, np.array(aps)


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
def test_map_and_precision_match_an_independent_computation(distance: str) -> None:
    rng = np.random.default_rng(0)
    base, queries = rng.normal(size=(300, 8)), rng.normal(size=(70, 8))
    b_y, q_y = rng.integers(0, 4, 300), rng.integers(0, 4, 70)
    base[:, 0] += b_y  # some structure, so that AP is far from chance
    queries[:, 0] += q_y
    database = Database(torch.tensor(base, dtype=torch.float32), torch.tensor(b_y))
    outputs = Outputs(torch.tensor(q_y), embedding=torch.tensor(queries, dtype=torch.float32),
                      database=database)
    relevant, interpolated = _reference(queries, q_y, base, b_y, distance)

    assert mean_ap(MAPParams(distance)).score(outputs) == pytest.approx(interpolated.mean(),
                                                                         abs=1e-6)
    # Non-interpolated AP is scikit-learn's average precision of each query, scored by -distance.
    scores = -NearestNeighbors(metric=distance).fit(base).kneighbors(
        queries, n_neighbors=len(base), return_distance=True)[0]
    plain = [average_precision_score(rel, score) for rel, score in zip(relevant, scores,
                                                                        strict=True)]
    assert mean_ap(MAPParams(distance, "none")).score(outputs) == pytest.approx(np.mean(plain),
                                                                                abs=1e-6)
    for k in (1, 10, 100):
        expected = relevant[:, :k].mean()
        assert precision(PrecisionParams(k, distance)).score(outputs) == pytest.approx(expected)


def test_map_of_a_hand_ranked_query() -> None:
    # One query of class 0; database ranked: relevant, irrelevant, relevant (2 relevant items).
    database = Database(torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]]), torch.tensor([0, 1, 0]))
    out = Outputs(torch.tensor([0]), embedding=torch.tensor([[1.0, 0.0]]), database=database)
    # P = 1, 1/2, 2/3; R = 1/2, 1/2, 1. Plain AP = (1 + 2/3) / 2.
    assert mean_ap(MAPParams(interpolation="none")).score(out) == pytest.approx(5 / 6)
    # Interpolated P = 1, 2/3, 2/3; levels 0..0.7 are nearest R = 1/2 at rank 1 (1.0), 0.8..1
    # nearest R = 1 at rank 3 (2/3): (8 · 1 + 3 · 2/3) / 11.
    assert mean_ap(MAPParams()).score(out) == pytest.approx((8 + 2) / 11)


def test_a_logit_metric_keeps_its_signature_and_a_retrieval_metric_declares_its_needs() -> None:
    top1 = train._metric("top1")
    assert top1(torch.tensor([[0.0, 1.0]]), torch.tensor([1]), None) == 1.0
    retrieval = train._metric("map")
    assert retrieval.needs == {"embedding", "database"} and retrieval.higher_is_better
    logits_only = Outputs(torch.tensor([1]), torch.tensor([[0.0, 1.0]]))
    assert top1.applies(logits_only) and not retrieval.applies(logits_only)
    with pytest.raises(ValueError, match="may need"):
        Metric("bad", lambda out: 0.0, needs=frozenset({"pixels"}))


# Providers ------------------------------------------------------------------------------------


def test_sklearn_teacher_is_fitted_once_cached_and_fingerprinted(tmp_path: Path, plugins,
                                                                 cache_dir: Path) -> None:
    spec = load(str(_bench(tmp_path, SKLEARN.format(n=8))), plugins)
    sweep = sweeps.plan(spec, plugins, cache_dir)
    checkpoint = Path(sweep.teacher.job.teacher.checkpoint)
    assert checkpoint.is_file() and checkpoint.suffix == ".skops"  # fitted at planning
    assert sweep.teacher_kind == "sklearn pca(n_components=8) + logistic_regression(max_iter=500)"

    data = train.prepared(sweep.teacher.job)
    restored = train.load_teacher(sweep.teacher.job.teacher, data)
    entry = plugins.entry("teachers", "sklearn")
    refitted = entry.factory(entry.make_params(spec.teacher.params)).fit(data)
    x = data.x_val
    assert torch.equal(restored(x), refitted(x))  # the same fit, deterministic
    s = shapes(restored, x)
    assert s.logits == (10,) and s.embedding == (8,) and s.stages == ((8,),)
    assert tap_points(restored).available() == {"logits", "embedding", "stages"}
    # log predict_proba: the probabilities sum to 1 (each floored at 1e-7).
    assert torch.allclose(restored(x).exp().sum(1), torch.ones(len(x)), atol=1e-4)
    assert (restored(x).argmax(1) == data.y_val).float().mean() > 0.85

    again = sweeps.plan(spec, plugins, cache_dir)
    assert again.teacher.fingerprint == sweep.teacher.fingerprint
    other = sweeps.plan(load(str(_bench(tmp_path, SKLEARN.format(n=12))), plugins), plugins,
                        cache_dir)
    assert other.teacher.fingerprint != sweep.teacher.fingerprint
    assert {r.fingerprint for r in other.students()}.isdisjoint(
        r.fingerprint for r in sweep.students())


def test_fitted_teachers_are_fitted_on_the_inputs_they_are_fed(tmp_path: Path, plugins,
                                                               cache_dir: Path) -> None:
    """A dataset whose ``prepare`` moves its samples far (×100 + 1000, as a normalisation
    moves uint8 pixels): a teacher fitted on the stored samples would be fed inputs it never
    saw, and predict garbage with exit 0."""
    spec = load(str(_bench(tmp_path, SKLEARN.format(n=8))), plugins)
    data = replace(train.prepared(sweeps.plan(spec, plugins, cache_dir).teacher.job),
                   prepare=lambda x: x * 100 + 1000)
    entry = plugins.entry("teachers", "sklearn")
    teacher = entry.factory(entry.make_params(spec.teacher.params)).fit(data)
    assert (teacher(data.inputs(data.x_val)).argmax(1) == data.y_val).float().mean() > 0.85
    entry = plugins.entry("teachers", "features")
    pca = entry.factory(entry.make_params({"kind": "pca", "dim": 6})).fit(data)
    fed = data.inputs(data.x_train).flatten(1)
    assert torch.allclose(pca.mean, fed.mean(0), rtol=1e-5)


def test_unknown_estimator_parameters_are_refused_when_the_file_is_read(tmp_path: Path,
                                                                         plugins) -> None:
    with pytest.raises(KdbenchError, match=r"options\.pca.*n_component"):
        load(str(_bench(tmp_path, SKLEARN.format(n=8).replace("n_components", "n_component"))),
             plugins)
    with pytest.raises(KdbenchError, match="provider 'sklearn' takes no `model`"):
        load(str(_bench(tmp_path, 'model = "mlp"\n' + SKLEARN.format(n=8))), plugins)


def test_feature_teachers_have_an_embedding_and_no_logits(tmp_path: Path, plugins,
                                                          cache_dir: Path) -> None:
    spec = load(str(_bench(tmp_path, 'provider = "features"\nkind = "hog"')), plugins)
    data = train.prepared(sweeps.plan(spec, plugins, cache_dir).teacher.job)
    for kind, dim in (("pca", 6), ("random", 6), ("hog", 2 * 2 * 9)):
        entry = plugins.entry("teachers", "features")
        provider = entry.factory(entry.make_params({"kind": kind, "dim": 6}))
        teacher = provider.fit(data)
        assert tap_points(teacher).available() == {"embedding", "stages"}
        s = shapes(teacher, data.x_val)
        assert s.logits is None and s.embedding == (dim,)
        path = tmp_path / f"{kind}.pt"
        provider.save(teacher, path)
        assert torch.equal(provider.restore(path, data)(data.x_val), teacher(data.x_val))
    mnist1d = replace(data, x_train=data.x_train.flatten(2))  # (N, 1, 64): not an image
    with pytest.raises(KdbenchError, match="needs images"):
        entry.factory(entry.make_params({"kind": "hog"})).fit(mnist1d)


def test_torchvision_teacher_from_weights_on_disk(tmp_path: Path, plugins, cache_dir: Path
                                                  ) -> None:
    import torchvision

    path = tmp_path / "resnet18.pt"
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), path)
    teacher = f'provider = "torchvision"\nname = "resnet18"\npath = "{path}"'
    spec = load(str(_bench(tmp_path, teacher, "[methods.kd]\n[methods.pkt]")), plugins)
    sweep = sweeps.plan(spec, plugins, cache_dir)
    model = train.load_teacher(sweep.teacher.job.teacher, train.prepared(sweep.teacher.job))
    s = shapes(model, torch.rand(2, 1, 8, 8))
    assert s.logits == (10,) and s.embedding == (512,) and len(s.stages) == 4
    fingerprint = sweep.teacher.fingerprint
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), path)
    assert sweeps.plan(spec, plugins, cache_dir).teacher.fingerprint != fingerprint
    path.unlink()
    with pytest.raises(KdbenchError, match="do not exist"):
        sweeps.plan(spec, plugins, cache_dir)


# Refusal at planning time ---------------------------------------------------------------------


def test_a_method_reading_a_tap_the_teacher_lacks_is_refused_at_planning(
        tmp_path: Path, plugins, cache_dir: Path, capsys: pytest.CaptureFixture) -> None:
    pca = 'provider = "features"\nkind = "pca"\ndim = 8'
    spec = load(str(_bench(tmp_path, pca, "[methods.pkt]\n[methods.kd]")), plugins)
    with pytest.raises(Incompatible, match=r"\[methods.kd\] kd needs the teacher's 'logits' tap "
                                           r"and teacher features PCA \(8 components\) has none"):
        sweeps.plan(spec, plugins, cache_dir)
    forest = 'provider = "sklearn"\nsteps = ["random_forest"]\n' \
             '[teacher.options.random_forest]\nn_estimators = 5'
    path = _bench(tmp_path, forest, "[methods.at]")
    assert main(["run", str(path), "--tracking-uri", f"sqlite:///{tmp_path / 'ml.db'}",
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "[methods.at] at needs the teacher's 'stages' tap and teacher " \
        "sklearn random_forest(n_estimators=5) has none (it has: logits)" in err[0]
    assert not list(tmp_path.glob("out/*.json"))


# End to end -----------------------------------------------------------------------------------


def test_a_pca_teacher_teaches_pkt_and_the_board_ranks_by_map(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture
                                                              ) -> None:
    path = _bench(tmp_path, 'provider = "features"\nkind = "pca"\ndim = 8',
                  "[methods.pkt]\n[methods.fitnet]\nguided = -1\ntwo_stage = false\n"
                  "relu = false")
    out = tmp_path / "out"
    assert main(["run", str(path), "--tracking-uri", f"sqlite:///{tmp_path / 'ml.db'}",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "nonneural: map (%)" in printed and "teacher: features PCA (8 components)" in printed
    board = json.loads((out / "nonneural.json").read_text())
    assert board["metric"] == "map" and board["teacher"]["kind"] == "features PCA (8 components)"
    assert 1 < board["teacher"]["value"] < 100  # the PCA features' own retrieval mAP (%)
    assert {r["method"] for r in board["rows"]} == {"pkt", "fitnet"}
    assert all(len(r["values"]) == 2 and min(r["values"]) > 0 for r in board["rows"])
    assert all(r["p_holm"] is not None for r in board["rows"])
    assert "Teacher: features PCA (8 components)." in (out / "nonneural.md").read_text()
