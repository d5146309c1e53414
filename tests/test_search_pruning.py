"""benchmarks/search_pruning.py: what a pruned and an unpruned study of one grid are reported as, built from
hand-made trials (their epochs, seconds and curves known)."""

import datetime
from functools import partial

import optuna
import pytest

from benchmarks.search_pruning import build_parser, comparison, markdown, replay, study_summary
from recbole_duet.search.optuna_search import choose, make_pruner

START = datetime.datetime(2026, 12, 6, 6, 0, 0)
GRID = {"update_dropout": optuna.distributions.CategoricalDistribution([0.0, 0.3, 0.5])}
SPACE = {"update_dropout": ("choice", [0.0, 0.3, 0.5])}
BEST = partial(choose, space=SPACE)
LOWEST = partial(choose, space=SPACE, maximize=False)


def add_trial(study, dropout, curve, seconds, pruned=False):
    """A finished trial of ``study`` that reported ``curve`` (one value an epoch) and took ``seconds``."""
    study.add_trial(
        optuna.trial.FrozenTrial(
            number=0, trial_id=0, state=optuna.trial.TrialState.PRUNED if pruned else optuna.trial.TrialState.COMPLETE,
            value=curve[-1] if pruned else max(curve), params={"update_dropout": dropout}, distributions=GRID,
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
    summary = study_summary(unpruned, BEST)
    assert (summary["epochs"], summary["seconds"]) == (6, 63.0)
    assert summary["chosen"] == {"update_dropout": 0.3} and summary["chosen_valid"] == 0.42
    assert summary["trials"][1]["valid_curve"] == [0.42, 0.41, 0.39]
    pruned_summary = study_summary(pruned, BEST)
    assert [row["state"] for row in pruned_summary["trials"]] == ["complete", "pruned"]
    assert pruned_summary["trials"][1]["reason"] == "below the median" and pruned_summary["trials"][1]["best_valid"] is None
    # a pruned trial is never chosen, however high its curve went
    assert (pruned_summary["epochs"], pruned_summary["chosen"]) == (5, {"update_dropout": 0.0})


def test_each_study_is_compared_with_the_unpruned_one(studies):
    summaries = {"none": study_summary(studies[0], BEST), "median": study_summary(studies[1], BEST)}
    assert comparison(summaries) == {"median": {"epochs_ratio": round(5 / 6, 3), "seconds_ratio": round(50 / 63, 3), "same_choice": False}}
    table = markdown({"model": "DUET", "dataset": "d", "config_files": ["a.yaml"], "params_file": "g", "machine": "m",
                      "studies": summaries, "comparison": comparison(summaries)})
    assert "| median | 1 / 1 | 5 | 50 | update_dropout 0.0 (0.4000) | 0.83, 0.79 (another choice) |" in table
    assert "| none | 2 / 0 | 6 | 63 | update_dropout 0.3 (0.4200) | – |" in table


def test_the_pruners_compared_are_optunas_names():
    assert build_parser().parse_args(["--config-files", "a", "--params-file", "g", "--dataset", "d", "--out", "o"]).pruners == ["none", "median"]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--config-files", "a", "--params-file", "g", "--dataset", "d", "--out", "o", "--pruners", "asha"])


def unpruned_summary():
    """Three unpruned trials whose curves peak at once and fall; the third's best stays behind."""
    study = optuna.create_study(direction="maximize")
    add_trial(study, 0.0, [0.50, 0.40, 0.30, 0.20], 40)
    add_trial(study, 0.3, [0.60, 0.50, 0.40], 30)
    add_trial(study, 0.5, [0.45, 0.44, 0.43, 0.42], 40)
    return study_summary(study, BEST)


def test_a_replayed_pruner_stops_the_trials_it_would_have_stopped():
    replayed = replay("median-of-best", make_pruner("median-of-best", 100), unpruned_summary(), "maximize", BEST)
    third = replayed["trials"][2]
    assert (third["state"], third["epochs"], third["seconds"], third["best_valid"]) == ("pruned", 2, 20.0, None)
    assert third["valid_curve"] == [0.45, 0.44]
    assert (replayed["epochs"], replayed["seconds"], replayed["chosen"]) == (9, 90.0, {"update_dropout": 0.3})
    # Optuna's median sets the third trial's best against the others' falling values: it runs to its end
    assert replay("median", make_pruner("median", 100), unpruned_summary(), "maximize", BEST)["epochs"] == 11


def test_replaying_no_pruner_gives_back_the_unpruned_study():
    unpruned = unpruned_summary()
    replayed = replay("none", make_pruner("none", 100), unpruned, "maximize", BEST)
    assert [row["state"] for row in replayed["trials"]] == ["complete"] * 3
    assert {k: replayed[k] for k in ("epochs", "seconds", "chosen", "chosen_valid")} == {
        k: unpruned[k] for k in ("epochs", "seconds", "chosen", "chosen_valid")
    }


def test_a_replay_minimising_chooses_the_lowest():
    study = optuna.create_study(direction="minimize")
    add_trial(study, 0.0, [0.5, 0.4], 10)  # add_trial records max(curve) as the value: the replay recomputes it
    add_trial(study, 0.3, [0.6, 0.3], 10)
    replayed = replay("none", make_pruner("none", 100), study_summary(study, LOWEST), "minimize", LOWEST)
    assert replayed["chosen"] == {"update_dropout": 0.3}


def test_a_trial_pruned_at_its_last_epoch_counts_as_pruned():
    study = optuna.create_study(direction="maximize")
    add_trial(study, 0.0, [0.5, 0.4], 10)
    add_trial(study, 0.3, [0.6, 0.5], 10)
    add_trial(study, 0.5, [0.1, 0.1], 10)  # its early stop came at epoch 2, where the pruner judges it
    replayed = replay("median-of-best", make_pruner("median-of-best", 100), study_summary(study, BEST), "maximize", BEST)
    assert [row["state"] for row in replayed["trials"]] == ["complete", "complete", "pruned"]


def test_a_study_with_a_tie_margin_chooses_the_simpler_of_tied_settings(studies):
    tied = partial(choose, space=SPACE, tie_margin=0.03)
    summaries = {"none": study_summary(studies[0], tied), "median": study_summary(studies[1], tied)}
    # 0.40 is 0.02 behind 0.42: a tie under 0.03, so the unpruned study keeps dropout 0 as the pruned one does
    assert summaries["none"]["chosen"] == {"update_dropout": 0.0} and summaries["none"]["chosen_valid"] == 0.40
    assert comparison(summaries)["median"]["same_choice"] is True
    table = markdown({"model": "DUET", "dataset": "d", "config_files": ["a.yaml"], "params_file": "g", "machine": "m",
                      "tie_margin": 0.03, "studies": summaries, "comparison": comparison(summaries)})
    assert "a validation margin under 0.03 is a tie" in table and "| 0.83, 0.79 |" in table
