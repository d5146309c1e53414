"""benchmarks/results_map.py: what the README's results map says of a row, checked on hand-made records."""

import pytest

from benchmarks.results_map import cost_ratio, verdict


def record(machine, seconds, **config):
    return {"machine": machine, "wall_seconds": seconds, "config": config}


def test_the_cost_counts_the_cloud_model_and_the_generator_against_the_backbone_on_one_machine():
    runs = {
        "Layers": {1: record("cpu", 100), 2: record("cpu", 300), 3: record(None, 10)},
        "DUET": {1: record("cpu", 50, cloud_checkpoint="layers.pth"), 2: record("gpu", 30), 3: record(None, 10)},
        "backbone": {1: record("cpu", 75), 2: record("cpu", 100), 3: record(None, 10)},
    }
    assert cost_ratio(runs, [1, 2, 3]) == (pytest.approx(2.0), 1)  # seed 2 mixes machines, seed 3 names none
    assert cost_ratio(runs, [2, 3]) is None


def test_a_jointly_trained_duet_costs_its_one_training_against_the_backbone():
    runs = {
        "Layers": {1: record("cpu", 100), 2: record("cpu", 100)},
        "DUET": {1: record("cpu", 120), 2: record("cpu", 90, cloud_checkpoint="layers.pth")},
        "backbone": {1: record("cpu", 60), 2: record("cpu", 95)},
    }
    assert cost_ratio(runs, [1]) == (pytest.approx(2.0), 1)  # no cloud_checkpoint: Layers is a separate training
    assert cost_ratio(runs, [1, 2]) == (pytest.approx(2.0), 2)  # seed 2: (100 + 90) / 95


@pytest.mark.parametrize("low, high, says", [(0.0001, 0.002, "helps"), (-0.002, -0.0001, "hurts"), (-0.001, 0.001, "none"), (0.0, 0.001, "none")])
def test_the_update_column_reads_the_ci_of_duet_minus_layers(low, high, says):
    assert verdict(low, high) == says
