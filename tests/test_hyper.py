"""Hyper-parameter search: RecBole's HyperTuning with hyperopt, on the plugin's objective function."""

import os
import re

import pytest
from test_end_to_end import REPO, run_cli, write_config_file

from recbole_duet.cli import _params_file, build_hyper_parser
from recbole_duet.search.hyper_tuning import HyperTuning

SHIPPED_KEYS = {"realtime_window", "generator_rank", "umn_weight", "learning_rate"}


def fake_objective(config_dict, config_file_list):
    score = config_dict["realtime_window"] + config_dict["umn_weight"]
    return {
        "model": "DUET",
        "best_valid_score": score,
        "valid_score_bigger": True,
        "best_valid_result": {"mrr@10": score},
        "test_result": {"mrr@10": score},
    }


def test_exhaustive_search_visits_every_grid_point_once_in_order():
    tuner = HyperTuning(fake_objective, params_dict={"choice": {"realtime_window": [5, 10], "umn_weight": [0.5, 1.0]}})
    tuner.run()
    assert tuner.params_list == [
        "realtime_window:5, umn_weight:0.5",
        "realtime_window:5, umn_weight:1.0",
        "realtime_window:10, umn_weight:0.5",
        "realtime_window:10, umn_weight:1.0",
    ]
    assert tuner.best_params == {"realtime_window": 10, "umn_weight": 1.0}


def test_exhaustive_search_refuses_continuous_keys():
    with pytest.raises(ValueError, match=r"'choice' parameters only, not \['learning_rate'\]"):
        HyperTuning(fake_objective, params_dict={"loguniform": {"learning_rate": [-8, 0]}})


def test_shipped_example_is_found_by_name_from_any_directory(run_dir):
    path = _params_file(build_hyper_parser(), "hyper.test")
    assert os.path.isabs(path) and os.path.dirname(path) != str(run_dir)
    assert set(HyperTuning._build_space_from_file(path)) == SHIPPED_KEYS


def parse_result_file(path):
    """``{params line: valid mrr@10}`` for every trial, and the ``Best params`` line."""
    with open(path, encoding="utf-8") as file:
        text = file.read()
    trials = dict(re.findall(r"^(learning_rate:[^\n]+)\nValid result:\n.*?mrr@10 : ([0-9.]+)", text, re.M | re.S))
    best = re.search(r"^Best params: (.+)$", text, re.M).group(1)
    return {params: float(score) for params, score in trials.items()}, best


def test_run_hyper_script_searches_two_trials_and_names_the_best(tiny_config_dict, run_dir):
    config_file = write_config_file(run_dir / "tiny.yaml", tiny_config_dict)
    (run_dir / "two.test").write_text("learning_rate choice [0.0001,0.05]\n", encoding="utf-8")
    args = ["--model=DUET", "--dataset=tiny", "--config_files", config_file, "--params_file", "two.test"]
    completed = run_cli([*args, "--output_file", "out.result"], cwd=run_dir, script=os.path.join(REPO, "run_hyper.py"))
    assert completed.returncode == 0, completed.stderr

    trials, best = parse_result_file(run_dir / "out.result")
    assert set(trials) == {"learning_rate:0.0001", "learning_rate:0.05"}
    assert len(set(trials.values())) == 2 and trials[best] == max(trials.values())
    assert f"best params:  {{'learning_rate': {best.split(':')[1]}}}" in completed.stdout
