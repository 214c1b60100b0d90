from conftest import briefly


def test_briefly_trains_kd_and_lowers_its_loss(cache_dir) -> None:
    result = briefly("kd", {"T": 2.0}, cache=cache_dir, epochs=3)
    assert result.status == "finished", result.error
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert result.history[0]["phase"] == "train"
