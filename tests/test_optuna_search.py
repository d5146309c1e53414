"""run_hyper.py --engine optuna: a RecBole search-space file on Optuna, several workers on one study in a real
database (SQLite, and a PostgreSQL server the test starts), pruning and failures recorded with their reasons."""

import os
import shutil
import socket
import subprocess
import sys
import sqlite3
import tempfile
from functools import partial
from pathlib import Path

import optuna
import pytest

from recbole_duet.errors import ConfigFileError
from recbole_duet.cli import build_hyper_parser
from recbole_duet.search import optuna_search
from recbole_duet.search.choices import PRUNERS, SAMPLERS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GRID = "learning_rate choice [0.01,0.02]\nrealtime_window choice [2,4]\n"


def fake_training(parameters, report, name, curves, failing=()):
    """Reports the epochs of ``curves[learning_rate]`` and returns the last; raises for a failing rate."""
    if parameters["learning_rate"] in failing:
        raise RuntimeError(f"diverged at learning rate {parameters['learning_rate']}")
    for epoch, score in enumerate(curves[parameters["learning_rate"]]):
        report(epoch, score)
    score = max(curves[parameters["learning_rate"]])
    return {"best_valid_score": score, "best_valid_result": {"ndcg@10": score}, "test_result": {"ndcg@10": score}}


def search(tmp_path, space_text, train, sampler="grid", pruner="none", n_trials=10, workers=1, name="s"):
    (tmp_path / "space").write_text(space_text)
    space = optuna_search.read_search_space(str(tmp_path / "space"))
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    optuna_search.run_workers(
        workers, storage_url=storage, study_name=name, space=space, train=train, sampler_name=sampler,
        pruner=optuna_search.make_pruner(pruner, 5), n_trials=n_trials, direction="maximize",
    )
    return optuna.load_study(study_name=name, storage=storage)


def test_every_sampler_and_pruner_the_command_line_offers_is_built(tmp_path):
    hyper_parser = build_hyper_parser()
    for name in PRUNERS:
        assert hyper_parser.parse_args(["--engine", "optuna", "--pruner", name]).pruner == name
        assert isinstance(optuna_search.make_pruner(name, 5), optuna.pruners.BasePruner)
    for name in SAMPLERS:
        assert hyper_parser.parse_args(["--sampler", name]).sampler == name
    with pytest.raises(SystemExit):
        hyper_parser.parse_args(["--pruner", "asha"])
    with pytest.raises(ValueError, match=r"--pruner 'asha' is not one of \['median', "):
        optuna_search.make_pruner("asha", 5)
    with pytest.raises(ValueError, match=r"--sampler 'cmaes' is not one of \['grid', "):
        optuna_search.make_sampler("cmaes", {})


def test_recboles_search_space_format_is_read_unchanged(tmp_path):
    (tmp_path / "space").write_text(
        "learning_rate loguniform -8,0\nembedding_size choice [64,96]\nmlp_hidden_size choice ['[64,64]','[128]']\n"
        "dropout_prob uniform 0.1,0.5\nn_layers quniform 1,3,1\n"
    )
    space = optuna_search.read_search_space(str(tmp_path / "space"))
    assert space == {
        "learning_rate": ("loguniform", [-8.0, 0.0]), "embedding_size": ("choice", [64, 96]),
        "mlp_hidden_size": ("choice", ["[64,64]", "[128]"]), "dropout_prob": ("uniform", [0.1, 0.5]),
        "n_layers": ("quniform", [1.0, 3.0, 1.0]),
    }
    trial = optuna.create_study().ask()
    value = optuna_search.suggest(trial, "learning_rate", *space["learning_rate"])
    assert trial.distributions["learning_rate"].log and 2.9e-4 < value <= 1.0  # exp(-8) .. exp(0)


@pytest.mark.parametrize("line, message", [("lr normal 0,1", "kind 'normal'"), ("lr uniform 1", "low,high"), ("lr choice []", "non-empty")])
def test_a_bad_search_space_line_is_named(tmp_path, line, message):
    (tmp_path / "space").write_text(f"embedding_size choice [64]\n{line}\n")
    with pytest.raises(ConfigFileError, match=f"line 2: .*{message}"):
        optuna_search.read_search_space(str(tmp_path / "space"))


def test_two_workers_on_one_sqlite_study_run_each_grid_point_once(tmp_path):
    curves = {0.01: [0.1, 0.2], 0.02: [0.1, 0.3]}
    study = search(tmp_path, GRID, partial(fake_training, curves=curves), workers=2)
    points = [tuple(sorted(t.params.items())) for t in study.trials]
    assert len(study.trials) == 4 and len(set(points)) == 4
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert study.best_value == 0.3 and study.best_params["learning_rate"] == 0.02


def test_a_stopped_grid_resumes_where_it_stopped(tmp_path):
    curves = {0.01: [0.1], 0.02: [0.2]}
    first = search(tmp_path, GRID, partial(fake_training, curves=curves, failing=(0.02,)))
    assert sorted(t.state.name for t in first.trials) == ["COMPLETE", "COMPLETE", "FAIL", "FAIL"]
    again = search(tmp_path, GRID, partial(fake_training, curves=curves))  # the queue is empty: nothing reruns
    assert len(again.trials) == 4


def test_a_trial_whose_worker_died_runs_again_when_the_search_resumes(tmp_path):
    (tmp_path / "space").write_text(GRID)
    space = optuna_search.read_search_space(str(tmp_path / "space"))
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna_search.prepare_study(storage, "s", space, "grid", optuna.pruners.NopPruner(), "maximize")
    dead = optuna_search.ask_queued(study)  # taken by a worker that was killed after its heartbeat an hour ago
    study._storage.record_heartbeat(dead._trial_id)  # noqa: SLF001
    with sqlite3.connect(tmp_path / "study.db") as database:
        database.execute("UPDATE trial_heartbeats SET heartbeat = datetime('now', '-1 hour')")
    resumed = search(tmp_path, GRID, partial(fake_training, curves={0.01: [0.1], 0.02: [0.2]}))
    states = sorted(t.state.name for t in resumed.trials)
    assert states == ["COMPLETE"] * 4 + ["FAIL"]
    complete = {tuple(sorted(t.params.items())) for t in resumed.trials if t.state.name == "COMPLETE"}
    assert len(complete) == 4  # the dead worker's grid point too
    assert [t.number for t in resumed.trials if t.state.name == "FAIL"] == [dead.number]


def test_a_trial_whose_worker_is_alive_is_left_to_it(tmp_path):
    (tmp_path / "space").write_text(GRID)
    space = optuna_search.read_search_space(str(tmp_path / "space"))
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna_search.prepare_study(storage, "s", space, "grid", optuna.pruners.NopPruner(), "maximize")
    alive = optuna_search.ask_queued(study)  # another worker is training it and has just said so
    study._storage.record_heartbeat(alive._trial_id)  # noqa: SLF001
    joined = search(tmp_path, GRID, partial(fake_training, curves={0.01: [0.1], 0.02: [0.2]}))
    assert sorted(t.state.name for t in joined.trials) == ["COMPLETE"] * 3 + ["RUNNING"]


def test_a_trial_below_the_median_stops_before_its_epoch_budget(tmp_path):
    space = "learning_rate choice [0.01,0.02,0.03]\n"
    curves = {0.01: [0.3, 0.4, 0.5, 0.6, 0.7], 0.02: [0.3, 0.4, 0.5, 0.6, 0.7], 0.03: [0.1, 0.1, 0.1, 0.1, 0.1]}
    study = search(tmp_path, space, partial(fake_training, curves=curves), pruner="median")
    by_rate = {t.params["learning_rate"]: t for t in study.trials}
    assert [by_rate[r].user_attrs["epochs"] for r in (0.01, 0.02)] == [5, 5]
    pruned = by_rate[0.03]
    assert pruned.state == optuna.trial.TrialState.PRUNED and pruned.user_attrs["epochs"] == 2  # warm-up: 1 epoch
    assert "below the median after epoch 1" in pruned.user_attrs["reason"]


@pytest.mark.parametrize("pruner, epochs", [("median", 5), ("median-of-best", 2)])
def test_a_trial_whose_best_stays_behind_falling_curves_is_pruned_by_the_median_of_best(tmp_path, pruner, epochs):
    """Curves that peak at once and fall (a generator on a fixed cloud model): after its second epoch the third
    trial's best, 0.45, is below the others' best over two epochs (median 0.55), so median-of-best stops it; Optuna's
    median compares it with their falling values at that epoch (median 0.45, then 0.35, ...) and never does."""
    space = "learning_rate choice [0.01,0.02,0.03]\n"
    curves = {0.01: [0.5, 0.4, 0.3, 0.2, 0.1], 0.02: [0.6, 0.5, 0.4, 0.3, 0.2], 0.03: [0.45, 0.44, 0.43, 0.42, 0.41]}
    study = search(tmp_path, space, partial(fake_training, curves=curves), pruner=pruner)
    third = {t.params["learning_rate"]: t for t in study.trials}[0.03]
    assert third.user_attrs["epochs"] == epochs
    assert third.state == (optuna.trial.TrialState.PRUNED if pruner == "median-of-best" else optuna.trial.TrialState.COMPLETE)


@pytest.mark.parametrize("sign, direction", [(1, "minimize"), (-1, "maximize")])
def test_the_median_of_best_compares_bests_up_to_the_same_epoch(sign, direction):
    """Minimising (and the mirror image, maximising): finished trials [0.3] (stopped after one epoch: it counts
    with its best) and [0.5, 0.4, 0.3, 0.1] (its later 0.1 not yet reached at epoch 2): the median of their best
    up to epoch 2 is 0.3."""
    study = optuna.create_study(direction=direction)
    for curve in ([0.3], [0.5, 0.4, 0.3, 0.1]):
        curve = [sign * value for value in curve]
        study.add_trial(optuna.trial.create_trial(value=curve[-1], intermediate_values=dict(enumerate(curve))))
    pruner = optuna_search.MedianOfBestPruner(n_startup_trials=2, n_warmup_steps=1)
    trial = study.ask()
    for step, value in enumerate([0.35, 0.32, 0.3]):
        trial.report(sign * value, step)
    assert pruner.prune(study, study.trials[-1]) is False  # a tie with the median is not behind it
    running = study.ask()
    for step, value in enumerate([0.35, 0.32, 0.31]):
        running.report(sign * value, step)
    assert pruner.prune(study, study.trials[-1]) is True


def test_the_median_of_best_waits_for_its_startup_trials_and_warm_up():
    study = optuna.create_study(direction="maximize")
    study.add_trial(optuna.trial.create_trial(value=0.9, intermediate_values={0: 0.9, 1: 0.9}))
    pruner = optuna_search.MedianOfBestPruner(n_startup_trials=2, n_warmup_steps=1)
    trial = study.ask()
    trial.report(0.1, 0)
    trial.report(0.1, 1)
    assert pruner.prune(study, study.trials[trial.number]) is False  # one finished trial: too few to judge
    study.add_trial(optuna.trial.create_trial(value=0.9, intermediate_values={0: 0.9, 1: 0.9}))
    assert pruner.prune(study, study.trials[trial.number]) is True
    early = study.ask()
    early.report(0.1, 0)
    assert pruner.prune(study, study.trials[-1]) is False  # its first epoch is warm-up


def test_a_failing_trial_is_recorded_with_its_reason_and_the_study_goes_on(tmp_path):
    curves = {0.01: [0.2], 0.02: [0.3]}
    study = search(tmp_path, GRID, partial(fake_training, curves=curves, failing=(0.01,)))
    failed = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    assert len(failed) == 2 and all("diverged at learning rate 0.01" in t.user_attrs["reason"] for t in failed)
    assert len(study.trials) == 4 and study.best_value == 0.3
    optuna_search.export_result(study, str(tmp_path / "result"))
    text = (tmp_path / "result").read_text()
    assert text.count("fail: RuntimeError: diverged") == 2 and text.endswith("Best valid score: 0.3\n")


SCREEN = {"update_dropout": ("choice", [0.0, 0.1, 0.3]), "hidden": ("choice", [[64], [64, 64]]), "lr": ("uniform", [0.1, 0.2])}


def test_a_settings_simplicity_counts_steps_from_each_choices_first_value():
    assert optuna_search.simplicity({"update_dropout": 0.0, "hidden": "[64]", "lr": 0.17}, SCREEN) == 0
    # list values are offered as their text; a parameter that is not a choice has no order
    assert optuna_search.simplicity({"update_dropout": 0.3, "hidden": "[64, 64]", "lr": 0.11}, SCREEN) == 3


def test_a_choice_mixing_a_plain_value_and_a_list_runs_each_point_with_its_value(tmp_path):
    seen = []

    def record(parameters, report, name):
        seen.append(parameters["hidden"])
        report(0, 0.5)
        return {"best_valid_score": 0.5, "best_valid_result": {}, "test_result": {}}

    study = search(tmp_path, "hidden choice [None, [64]]\n", record)
    assert sorted(seen, key=repr) == [None, [64]]  # the values themselves, each point once
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    space = optuna_search.read_search_space(str(tmp_path / "space"))
    assert optuna_search.chosen_trial(study, space, tie_margin=0.1).params == {"hidden": "None"}  # the first listed


@pytest.mark.parametrize("margin, chosen", [(0.0, 2), (0.0004, 1), (0.0006, 0), (0.0005, 1)])
def test_a_tie_on_validation_keeps_the_simpler_setting(margin, chosen):
    scored = [({"update_dropout": 0.0}, 0.0527), ({"update_dropout": 0.1}, 0.0529), ({"update_dropout": 0.3}, 0.0532)]
    # 0.0003 behind is a tie under 0.0004, 0.0005 behind under 0.0006; a margin of exactly 0.0005 is not under 0.0005
    assert optuna_search.choose(scored, SCREEN, margin) == chosen


def test_a_tie_between_equally_simple_settings_goes_to_the_better_and_minimising_looks_down():
    scored = [({"update_dropout": 0.1, "hidden": "[64]"}, 0.50), ({"update_dropout": 0.0, "hidden": "[64, 64]"}, 0.52),
              ({"update_dropout": 0.3, "hidden": "[64]"}, 0.40)]
    assert optuna_search.choose(scored, SCREEN, 0.05) == 1  # one step each: the better score
    assert optuna_search.choose(scored, SCREEN, 0.0, maximize=False) == 2
    assert optuna_search.choose(scored, SCREEN, 0.15, maximize=False) == 0  # 0.50 is within 0.15 of 0.40, and simpler


def test_the_result_file_names_the_chosen_setting_beside_the_best(tmp_path):
    curves = {0.01: [0.3000, 0.3001], 0.02: [0.3004]}
    space_text = "learning_rate choice [0.01,0.02]\n"
    study = search(tmp_path, space_text, partial(fake_training, curves=curves))
    space = optuna_search.read_search_space(str(tmp_path / "space"))
    assert optuna_search.export_result(study, str(tmp_path / "plain"), space) is None
    assert "Chosen" not in (tmp_path / "plain").read_text()
    chosen = optuna_search.export_result(study, str(tmp_path / "result"), space, tie_margin=0.0005)
    assert chosen.params == {"learning_rate": 0.01}  # returned for the printout, not chosen twice
    assert (tmp_path / "result").read_text().endswith(
        "Best params: learning_rate:0.02\nBest valid score: 0.3004\n"
        "Chosen params (the simplest within 0.0005 of the best): learning_rate:0.01\nChosen valid score: 0.3001\n"
    )
    assert optuna_search.chosen_trial(study, space, 0.0002).params == {"learning_rate": 0.02}


@pytest.mark.parametrize("value", ["-0.001", "nan"])
def test_a_negative_tie_margin_is_refused(value, capsys):
    with pytest.raises(SystemExit):
        build_hyper_parser().parse_args(["--engine", "optuna", "--tie-margin", value])
    assert "--tie-margin" in capsys.readouterr().err


def test_tpe_draws_until_the_study_holds_n_trials(tmp_path):
    study = search(tmp_path, "learning_rate uniform 0.01,0.02\n", partial(fake_training, curves={}), sampler="tpe", n_trials=3)
    assert len(study.trials) == 3  # every one failed here (no curve): failures count, and the study ends


def postgres_binaries():
    for version in ("17", "16", "15"):
        folder = f"/usr/lib/postgresql/{version}/bin"
        if os.path.isfile(os.path.join(folder, "initdb")):
            return folder
    return shutil.which("initdb") and os.path.dirname(shutil.which("initdb"))


@pytest.fixture
def postgres_url():
    """A PostgreSQL server of its own in a temporary folder on a loopback port, stopped after the test."""
    binaries = postgres_binaries()
    if binaries is None:
        if os.environ.get("RECBOLE_DUET_REQUIRE_POSTGRES"):
            pytest.fail("PostgreSQL's initdb is not installed (.ci/run installs Debian's postgresql)")
        pytest.skip("PostgreSQL's initdb is not installed (apt-get install postgresql)")
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []  # initdb refuses root
    folder = Path(tempfile.mkdtemp(prefix="recbole-duet-pg-"))  # pytest's folders are closed to other users
    if as_postgres:
        shutil.chown(folder, "postgres")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    run = partial(subprocess.run, check=True, capture_output=True, timeout=120)
    run([*as_postgres, f"{binaries}/initdb", "-D", str(folder / "data"), "-U", "duet", "--auth=trust"])
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1"
    run([*as_postgres, f"{binaries}/pg_ctl", "-D", str(folder / "data"), "-o", options, "-l", str(folder / "log"), "-w", "start"])
    try:
        yield f"postgresql+psycopg2://duet@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_postgres, f"{binaries}/pg_ctl", "-D", str(folder / "data"), "-m", "immediate", "stop"], timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


def test_two_workers_share_one_study_on_a_postgresql_server(postgres_url, tmp_path):
    (tmp_path / "space").write_text(GRID)
    space = optuna_search.read_search_space(str(tmp_path / "space"))
    curves = {0.01: [0.1, 0.2], 0.02: [0.1, 0.3]}
    optuna_search.run_workers(
        2, storage_url=postgres_url, study_name="shared", space=space, train=partial(fake_training, curves=curves),
        sampler_name="grid", pruner=optuna.pruners.NopPruner(), n_trials=10, direction="maximize",
    )
    study = optuna.load_study(study_name="shared", storage=postgres_url)
    assert len(study.trials) == 4 and len({tuple(sorted(t.params.items())) for t in study.trials}) == 4


def test_run_hyper_with_optuna_trains_a_grid_with_two_workers(tiny_config_dict, run_dir):
    import yaml

    (run_dir / "space").write_text("learning_rate choice [0.01,0.02]\ngenerator_rank choice [0,4]\n")
    settings = {**tiny_config_dict, "epochs": 2, "model": "DUET", "dataset": "tiny"}
    (run_dir / "fixed.yaml").write_text(yaml.safe_dump(settings))
    command = [sys.executable, os.path.join(REPO, "run_hyper.py"), "--engine", "optuna", "--workers", "2"]
    command += ["--config_files", "fixed.yaml", "--params_file", "space", "--output_file", "result", "--pruner", "none"]
    completed = subprocess.run(command, cwd=run_dir, capture_output=True, text=True, timeout=900)
    assert completed.returncode == 0, completed.stderr[-3000:]
    study = optuna.load_study(study_name="DUET-tiny-space", storage=f"sqlite:///{run_dir / 'recbole-duet-optuna.db'}")
    reasons = [t.user_attrs.get("reason") for t in study.trials]
    assert len(study.trials) == 4 and all(t.user_attrs.get("epochs") == 2 * 2 for t in study.trials), reasons  # 2 stages
    assert len(list((run_dir / "saved").glob("trial-*"))) == 4  # each trial's models in a folder of its own
    assert "Best params: " in (run_dir / "result").read_text()
