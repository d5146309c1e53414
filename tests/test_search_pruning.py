"""benchmarks/search_pruning.py: what a pruned and an unpruned study of one grid are reported as, built from
hand-made trials (their epochs, seconds and curves known)."""

import datetime

import optuna
import pytest

from benchmarks.search_pruning import build_parser, comparison, markdown, study_summary

START = datetime.datetime(2026, 12, 6, 6, 0, 0)
GRID = {"update_dropout": optuna.distributions.CategoricalDistribution([0.0, 0.3])}


def add_trial(study, dropout, curve, seconds, pruned=False):
    """A finished trial of ``study`` that reported ``curve`` (one value an epoch) and took ``seconds``."""
    study.add_trial(
        optuna.trial.FrozenTrial(
            number=0, trial_id=0, state=optuna.trial.TrialState.PRUNED if pruned else optuna.trial.TrialState.COMPLETE,
            value=None if pruned else max(curve), params={"update_dropout": dropout}, distributions=GRID,
            datetime_start=START, datetime_complete=START + datetime.timedelta(seconds=seconds),
            intermediate_values=dict(enumerate(curve)), system_attrs={},
            user_attrs={"epochs": len(curve), **({"reason": "below the median"} if pruned else {})},
        )
    )


@pytest.fixture
def studies():
    unpruned, pruned = (optuna.create_study(direction="maximize") for _ in range(2))
    add_trial(unpruned, 0.0, [0.40, 0.38, 0.37], 30)
    add_trial(unpruned, 0.3, [0.42, 0.41, 0.39], 33)
    add_trial(pruned, 0.0, [0.40, 0.38, 0.37], 29)
    add_trial(pruned, 0.3, [0.42, 0.41], 21, pruned=True)
    return unpruned, pruned


def test_a_study_is_summed_over_its_trials_and_chooses_its_best_complete_trial(studies):
    unpruned, pruned = studies
    summary = study_summary(unpruned)
    assert (summary["epochs"], summary["seconds"]) == (6, 63.0)
    assert summary["chosen"] == {"update_dropout": 0.3} and summary["chosen_valid"] == 0.42
    assert summary["trials"][1]["valid_curve"] == [0.42, 0.41, 0.39]
    pruned_summary = study_summary(pruned)
    assert [row["state"] for row in pruned_summary["trials"]] == ["complete", "pruned"]
    assert pruned_summary["trials"][1]["reason"] == "below the median" and pruned_summary["trials"][1]["best_valid"] is None
    # a pruned trial is never chosen, however high its curve went
    assert (pruned_summary["epochs"], pruned_summary["chosen"]) == (5, {"update_dropout": 0.0})


def test_each_study_is_compared_with_the_unpruned_one(studies):
    summaries = {"none": study_summary(studies[0]), "median": study_summary(studies[1])}
    assert comparison(summaries) == {"median": {"epochs_ratio": round(5 / 6, 3), "seconds_ratio": round(50 / 63, 3), "same_choice": False}}
    table = markdown({"model": "DUET", "dataset": "d", "config_files": ["a.yaml"], "params_file": "g", "machine": "m",
                      "studies": summaries, "comparison": comparison(summaries)})
    assert "| median | 1 / 1 | 5 | 50 | update_dropout 0.0 (0.4000) | 0.83, 0.79 (another choice) |" in table
    assert "| none | 2 / 0 | 6 | 63 | update_dropout 0.3 (0.4200) | – |" in table


def test_the_pruners_compared_are_optunas_names():
    assert build_parser().parse_args(["--config-files", "a", "--params-file", "g", "--dataset", "d", "--out", "o"]).pruners == ["none", "median"]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--config-files", "a", "--params-file", "g", "--dataset", "d", "--out", "o", "--pruners", "asha"])
