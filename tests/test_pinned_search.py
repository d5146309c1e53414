"""The hyper-parameter search reports its best trial, not its last (issue 12): scripted trial scores that
rise and fall, for a higher-is-better metric and for a lower-is-better one (logloss), through the tuner and
through the ``run_hyper.py`` command line."""

import pytest

from recbole_duet import cli, quick_start
from recbole_duet.search.hyper_tuning import HyperTuning

# Valid scores per realtime_window, in grid order: the best trial is neither the first nor the last.
HIGHER_IS_BETTER = {5: 0.30, 10: 0.90, 20: 0.10, 40: 0.50}
LOWER_IS_BETTER = {5: 0.60, 10: 0.20, 20: 0.70, 40: 0.40}  # logloss
SEARCHES = [(HIGHER_IS_BETTER, True, "mrr@10"), (LOWER_IS_BETTER, False, "logloss")]
IDS = ["mrr-higher-is-better", "logloss-lower-is-better"]


def scripted_objective(scores, bigger, metric):
    """An objective whose trials return the given valid score for their ``realtime_window``."""

    def objective(config_dict, config_file_list, **run_arguments):
        score = scores[config_dict["realtime_window"]]
        return {
            "model": "DUET",
            "best_valid_score": score,
            "valid_score_bigger": bigger,
            "best_valid_result": {metric: score},
            "test_result": {metric: score + 0.01},
        }

    return objective


@pytest.mark.parametrize("scores, bigger, metric", SEARCHES, ids=IDS)
def test_the_tuner_keeps_the_best_trial_not_the_last(scores, bigger, metric):
    tuner = HyperTuning(scripted_objective(scores, bigger, metric), params_dict={"choice": {"realtime_window": list(scores)}})
    tuner.run()
    assert tuner.params_list == [f"realtime_window:{window}" for window in scores]  # every trial ran
    assert tuner.best_params == {"realtime_window": 10}
    assert tuner.best_score == scores[10]


@pytest.mark.parametrize("scores, bigger, metric", SEARCHES, ids=IDS)
def test_run_hyper_reports_the_best_trial_in_its_file_and_output(scores, bigger, metric, run_dir, monkeypatch, capsys):
    # hyper_main imports the runner's objective when it runs (the CLI imports training code lazily)
    monkeypatch.setattr(quick_start, "objective_function", scripted_objective(scores, bigger, metric))
    (run_dir / "window.test").write_text(f"realtime_window choice {list(scores)}\n", encoding="utf-8")
    cli.hyper_main(["--model=DUET", "--dataset=tiny", "--params_file=window.test", "--output_file=out.result"])
    report = (run_dir / "out.result").read_text(encoding="utf-8")
    assert report.count("Valid result:") == len(scores)
    assert report.endswith(f"Best params: realtime_window:10\nBest valid score: {scores[10]}\n")
    printed = capsys.readouterr().out
    assert "best params:  {'realtime_window': 10}" in printed
    assert f"'{metric}': {scores[10] + 0.01}" in printed.split("best result:")[1]  # the best trial's test result
