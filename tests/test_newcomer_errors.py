"""A newcomer's first mistakes end in one line naming the culprit; runs in one process log apart, in plain numbers."""

import glob
import importlib.util
import os
import subprocess
import sys

import pytest
from conftest import build_pipeline

from recbole_duet import run_recbole_duet
from recbole_duet.config import Config
from recbole_duet.errors import ConfigError, DatasetNotFoundError, MissingDependencyError

# The command line with LightGBM and XGBoost hidden, whether or not they are installed here.
CLI_WITHOUT_EXLIB = (
    "import importlib.util as util; find_spec = util.find_spec; "
    "util.find_spec = lambda name, *args: None if name in ('lightgbm', 'xgboost') else find_spec(name, *args); "
    "from recbole_duet.cli import main; main()"
)


def write_inter_without_time(root, name="notime"):
    folder = os.path.join(root, name)
    os.makedirs(folder, exist_ok=True)
    rows = ["user_id:token\titem_id:token"] + [f"u{u}\ti{(u + k) % 9 + 1}" for u in range(1, 8) for k in range(5)]
    with open(os.path.join(folder, f"{name}.inter"), "w", encoding="utf-8") as file:
        file.write("\n".join(rows) + "\n")
    return root


@pytest.mark.parametrize(
    "case, args, expected",
    [
        ("unknown-model", ["--model=NotAModel"], ["'NotAModel'", "config key 'model'"]),
        ("model-case", ["--model=sasrec"], ["'sasrec'", "'SASRec'"]),
        ("exlib", ["--model=LightGBM"], ["'LightGBM'", "pip install lightgbm xgboost"]),
        ("missing-config", ["--config_files", "nowhere.yaml"], ["'nowhere.yaml' does not exist"]),
        ("bad-yaml", ["--config_files", "bad.yaml"], ["'bad.yaml' line 3 is not valid yaml"]),
        ("no-time-column", ["--model=SASRec", "--dataset=notime", "--data_path=data"], ["no time column 'timestamp'"]),
        ("epochs-text", ["--epochs=abc"], ["'abc'", "config key 'epochs'", "an integer >= 1"]),
        ("epochs-zero", ["--epochs=0"], ["0", "config key 'epochs'", "an integer >= 1"]),
        ("batch-float", ["--train_batch_size=0.5"], ["config key 'train_batch_size'"]),
        ("rate-negative", ["--learning_rate=-1"], ["config key 'learning_rate'", "a number > 0"]),
        ("patience-negative", ["--stopping_step=-1"], ["config key 'stopping_step'", "an integer >= 0"]),
        ("backbone-case", ["--backbone=gru4rec"], ["'gru4rec'", "'GRU4Rec'", "case-sensitive"]),
    ],
)
def test_newcomer_mistakes_end_in_one_line(run_dir, case, args, expected):
    (run_dir / "bad.yaml").write_text("epochs: 1\nlayers: [1, 2\nseed: 3\n")
    write_inter_without_time(str(run_dir / "data"))
    command = [sys.executable, "-c", CLI_WITHOUT_EXLIB, *args]
    completed = subprocess.run(command, cwd=run_dir, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 1, completed.stderr[-2000:]
    assert "Traceback" not in completed.stderr
    error = completed.stderr.strip().splitlines()[-1]  # after the run's log, when it got as far as reading data
    assert error.startswith("error: "), completed.stderr[-2000:]
    for text in expected:
        assert text in error
    if case == "no-time-column":
        assert os.path.join("data", "notime", "notime.inter") in error


def test_a_key_two_edits_from_a_known_one_is_warned_about_by_both_names(run_dir, caplog):
    caplog.set_level("WARNING")  # an earlier run in this process may have left the root logger at its state: ERROR
    Config(model="DUET", dataset="ml-100k", config_dict={"realtime_windw": 5, "my_own_key": 1, "epochs": 2})
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert warnings == ["config key 'realtime_windw' is read by neither RecBole nor the plugin: did you mean 'realtime_window'?"]


def test_the_log_opens_with_the_training_budget(tiny_config_dict):
    from recbole_duet.quick_start import training_budget_line

    config = Config(model="DUET", dataset="tiny", config_dict=tiny_config_dict)
    assert training_budget_line(config) == (
        "DUET(SASRec) on tiny: up to 1 epochs, stopping after 10 without a better valid MRR@10 "
        "(--epochs=N and --stopping_step=N change them)"
    )


def test_exlib_models_name_the_package_to_install(monkeypatch, run_dir):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "xgboost" else find_spec(name, *a))
    with pytest.raises(MissingDependencyError, match=r"'XGBoost' needs \[.*'xgboost'\].*pip install .*xgboost"):
        Config(model="XGBoost", dataset="ml-100k")


def test_model_names_are_found_in_every_recbole_package(run_dir):
    for name in ("BPR", "DeepFM", "SASRec", "KGAT"):
        assert Config(model=name).model_class.__name__ == name
    with pytest.raises(ConfigError, match="'Sasrec'"):
        Config(model="Sasrec")


@pytest.mark.parametrize(
    "model, negatives",
    [("SASRec", None), ("DUET", None), ("RepeatNet", 1), ("SINE", 1)],
)
def test_ce_drops_the_training_negative_only_where_recbole_refuses_to_start(run_dir, model, negatives):
    # RepeatNet and SINE declare their input type, so RecBole trains their CE loss with a sampled negative.
    config = Config(model=model)
    assert config["loss_type"] == "CE"
    sample_num = config["train_neg_sample_args"]["sample_num"]
    assert (None if config["train_neg_sample_args"]["distribution"] == "none" else sample_num) == negatives


def test_sequential_model_loads_the_time_column_load_col_leaves_out(tiny_config_dict, caplog):
    config_dict = {**tiny_config_dict, "load_col": {"inter": ["user_id", "item_id"]}}
    with caplog.at_level("INFO"):
        config, (train_data, _, _), _ = build_pipeline(config_dict, model="SASRec")
    assert "timestamp" in train_data._dataset.inter_feat
    assert config["load_col"]["inter"] == ["user_id", "item_id", "timestamp"]
    assert config_dict["load_col"]["inter"] == ["user_id", "item_id"]  # the caller's dict is left alone
    assert sum("did not name the time field 'timestamp'" in message for message in caplog.messages) == 1


def test_missing_time_column_is_named_with_the_file(run_dir):
    data_path = write_inter_without_time(str(run_dir / "data"))
    with pytest.raises(DatasetNotFoundError, match=r"has no time column 'timestamp' \(its columns: \['user_id', 'item_id'\]\)"):
        build_pipeline({"data_path": data_path}, model="GRU4Rec", dataset="notime")


def test_general_models_in_random_order_need_no_time_column(run_dir):
    data_path = write_inter_without_time(str(run_dir / "data"))
    config, _, _ = build_pipeline({"data_path": data_path, "embedding_size": 4}, model="BPR", dataset="notime")
    assert config["load_col"]["inter"] == ["user_id", "item_id"]


def test_runs_in_one_process_log_to_their_own_files_in_plain_numbers(tiny_config_dict):
    config_dict = {**tiny_config_dict, "state": "INFO"}
    results = [run_recbole_duet(model=model, dataset="tiny", config_dict=config_dict) for model in ("SASRec", "GRU4Rec")]
    for model, result in zip(("SASRec", "GRU4Rec"), results):
        assert type(result["best_valid_score"]) is float
        assert all(type(value) is float for value in result["test_result"].values())
        (log_file,) = glob.glob(os.path.join("log", model, "*.log"))
        log = open(log_file, encoding="utf-8").read()
        assert f"{model}(" in log and "test result" in log and "np.float64" not in log
        assert f"('mrr@10', {result['test_result']['mrr@10']})" in log
    sasrec_log = open(glob.glob(os.path.join("log", "SASRec", "*.log"))[0], encoding="utf-8").read()
    assert "GRU4Rec" not in sasrec_log
