"""The benchmark harness on a tiny synthetic dataset: files, schema, resume."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml
from conftest import REPO, TINY_MODEL_CONFIG, repo_on_path, write_atomic_dataset, write_interleaved_dataset

MODELS = ["SASRec", "DUET-SASRec", "Base-SASRec", "Finetune-SASRec"]
ADAPTATION_KEYS = {  # what a device's adaptation costs: DUET's generation, the fine-tuning baseline's tuning
    "DUET-SASRec": {"generation_ms_p50", "generation_ms_p99", "devices_per_s", "payload_bytes", "payload_bytes_fp16"},
    "Finetune-SASRec": {"finetune_ms_per_device"},
}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def harness(tmp_path):
    data_path = write_atomic_dataset(str(tmp_path / "data"))
    overrides = tmp_path / "tiny.yaml"
    overrides.write_text(
        yaml.safe_dump(
            {
                **TINY_MODEL_CONFIG,
                "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
                "MAX_ITEM_LIST_LENGTH": 8,
                "epochs": 1,
                "train_batch_size": 64,
                "finetune_steps": 2,
                "state": "WARNING",
            }
        )
    )
    out = tmp_path / "out"

    def run(seeds, models=MODELS, extra=()):
        command = [sys.executable, "-m", "benchmarks.run", "--dataset", "tiny"]
        command += ["--data-path", data_path, "--seeds", str(seeds), "--models", *models]
        command += ["--config-files", str(overrides), "--out", str(out), *extra]
        completed = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=repo_on_path())
        assert completed.returncode == 0, completed.stderr[-3000:]
        return completed.stdout, json.loads((out / "results.json").read_text())

    return run, out


def test_harness_writes_results_json_markdown_and_plots(harness):
    run, out = harness
    stdout, records = run(seeds=2)
    assert "6 training runs to do" in stdout  # per seed: SASRec, DUET (with Base), Layers (tuned by Finetune)
    assert sorted((r["model"], r["seed"]) for r in records) == sorted((m, s) for m in MODELS for s in (2020, 2021))
    for record in records:
        assert record["dataset"] == "tiny" and record["backbone"] == "SASRec"
        assert {"ndcg@10", "recall@10"} <= set(record["valid"]) and {"ndcg@10", "recall@10"} <= set(record["test"])
        assert record["epochs"] == 1 and record["epoch_seconds"] > 0
        assert "cores, torch " in record["machine"]  # where it ran, and whether it kept freed memory (glibc)
        assert record["machine"].endswith((" threads", " threads, freed memory kept"))
        assert record["config"]["MAX_ITEM_LIST_LENGTH"] == 8 and record["config"]["seed"] == record["seed"]
        if record["model"] in ADAPTATION_KEYS:
            assert set(record["adaptation"]) == ADAPTATION_KEYS[record["model"]]
            assert all(value > 0 for value in record["adaptation"].values())
        if record["model"] == "DUET-SASRec":  # two dynamic 16 x 16 layers with biases, fp32
            assert record["adaptation"]["payload_bytes"] == 2 * (16 * 16 + 16) * 4
        elif record["model"] not in ADAPTATION_KEYS:
            assert "adaptation" not in record
    markdown = (out / "results.md").read_text()
    for model in MODELS:
        assert f"| {model} | 2 | " in markdown
    assert f"Machines: 8 runs on {records[0]['machine']}." in markdown
    assert "NDCG@10 DUET/backbone" in markdown and "fine-tune/generation time = –" not in markdown
    # 1 epoch each; per seed SASRec, Layers and DUET, whose training_order cloud_first is two trainings
    assert "hit the epoch cap instead of stopping early: 8 of 8." in markdown
    for record in records:
        if record["model"] != "SASRec":
            family = "Layers" if record["model"] == "Finetune-SASRec" else "DUET"
            assert record["training"] == f"{family}-SASRec"
            assert record["config"].get("duet_inference", "generated") == ("global" if family == "Layers" else "generated")
        if record.get("training") == "DUET-SASRec":
            stage = record["cloud_stage"]  # the cloud model DUET's generator learned on, trained first on its own
            assert stage["epochs"] == 1 and stage["stopped_early"] is False and len(stage["training_valid_curve"]) == 1
            assert {"ndcg@10", "recall@10"} <= set(stage["valid"]) and {"ndcg@10", "recall@10"} <= set(stage["test"])
        else:
            assert "cloud_stage" not in record
    (base,) = [r for r in records if r["model"] == "Base-SASRec" and r["seed"] == 2020]
    assert base["test"] == pytest.approx(base["cloud_stage"]["test"], abs=1e-4)  # Base is that fixed cloud model
    # each training keeps its best model in a folder of its own (RecBole's file name alone is model and second)
    kept = sorted(path.name for path in (out / "checkpoints").iterdir() if any(path.glob("*.pth")))
    assert kept == sorted(f"tiny-{name}-{seed}" for seed in (2020, 2021) for name in ("DUET-SASRec", "Layers-SASRec", "SASRec"))
    for plot in ("metrics.png", "accuracy_vs_time.png"):
        assert (out / plot).read_bytes()[:8] == PNG_MAGIC
    assert list((out / "checkpoints").glob("*.state.pth")) == []  # both stages' states go once recorded


def test_harness_resumes_without_redoing_finished_pairs(harness):
    run, out = harness
    _, first = run(seeds=1)
    stdout, again = run(seeds=1)
    assert "0 training runs to do" in stdout and again == first
    run(seeds=1, models=["SASRec"])  # another process's --models, same folder: the report keeps every model's row
    markdown = (out / "results.md").read_text()
    assert all(f"| {model} | 1 | " in markdown for model in MODELS)
    stdout, more = run(seeds=2)
    assert "3 training runs to do" in stdout
    assert more[: len(first)] == first and {r["seed"] for r in more[len(first) :]} == {2021}


def test_learning_rate_grid_layers_baseline_and_paired_statistics(harness):
    run, out = harness
    models = ["SASRec", "DUET-SASRec", "Base-SASRec", "FinetuneAll-SASRec", "Layers-SASRec"]
    stdout, records = run(seeds=2, models=models, extra=["--lr-grid", "0.0001", "0.01"])
    assert "9 training runs to do" in stdout  # 3 trainings (SASRec, DUET, Layers) x 2 rates on the first seed, 3 on the second
    first_seed = [r for r in records if r["seed"] == 2020]
    assert sorted((r["model"], r["learning_rate"]) for r in first_seed) == sorted(
        (m, lr) for m in models for lr in (0.0001, 0.01)
    )
    for model in models:
        decider = {"Base-SASRec": "DUET-SASRec", "FinetuneAll-SASRec": "Layers-SASRec"}.get(model, model)
        candidates = [r for r in first_seed if r["model"] == decider]
        best = max(candidates, key=lambda r: r["valid"]["ndcg@10"])["learning_rate"]
        (later,) = [r for r in records if r["seed"] == 2021 and r["model"] == model]
        assert later["learning_rate"] == best and later["config"]["learning_rate"] == best
    for record in records:
        assert record["wall_seconds"] > record["epoch_seconds"] > 0 and record["stopped_early"] is False
        assert len(record["training_valid_curve"]) == record["epochs"]
        if record["model"] in ("SASRec", "DUET-SASRec", "Layers-SASRec"):  # the trained model: its own curve's best,
            curve, start = record["training_valid_curve"], record["training_start_valid"]  # or the model it started from
            assert (start is not None) == (record["model"] == "DUET-SASRec")  # cloud first: the generator stage's start
            assert record["kept_starting_model"] == (start is not None and start > max(curve))
            best = max(curve + ([start] if start is not None else []))
            assert best == pytest.approx(record["valid"]["ndcg@10"], abs=1e-4)
        with np.load(out / record["per_user_file"]) as per_user:
            assert len(per_user["users"]) == len(set(per_user["users"])) == 30  # every tiny user, once
            for metric in ("ndcg@10", "recall@10"):
                assert abs(per_user[metric].mean() - record["test"][metric]) < 1e-4  # RecBole rounds to 4 places
    layers = [r for r in records if r["model"] == "Layers-SASRec"]
    assert all(r["config"]["duet_inference"] == "global" and "adaptation" not in r for r in layers)
    markdown = (out / "results.md").read_text()
    (finetune_all,) = [r for r in records if r["model"] == "FinetuneAll-SASRec" and r["seed"] == 2021]
    assert finetune_all["test_ms_per_user"] > 0 and "| FinetuneAll-SASRec | 2 | " in (out / "results.md").read_text()
    for second in ("SASRec", "Base-SASRec", "Layers-SASRec", "FinetuneAll-SASRec"):
        assert f"| DUET-SASRec | {second} | ndcg@10 | " in markdown
    assert (out / "paired_ci.png").read_bytes()[:8] == PNG_MAGIC
    assert "| SASRec | 2 | " in markdown  # one record per seed: the chosen rate's
    # the reported trainings, one per family and seed, DUET's two stages apart
    assert "hit the epoch cap instead of stopping early: 8 of 8." in markdown


def test_harness_without_matplotlib_warns_before_training_and_skips_the_plots(tmp_path):
    hidden = tmp_path / "no-matplotlib" / "matplotlib"  # a matplotlib that fails to import, as if not installed
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError('No module named matplotlib')\n")
    overrides = tmp_path / "tiny.yaml"
    settings = {**TINY_MODEL_CONFIG, "MAX_ITEM_LIST_LENGTH": 8, "epochs": 1, "state": "INFO"}  # training logs first
    overrides.write_text(yaml.safe_dump(settings))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "benchmarks.run", "--dataset", "tiny", "--seeds", "1"]
    command += ["--data-path", write_atomic_dataset(str(tmp_path / "data")), "--models", "GRU4Rec"]
    command += ["--config-files", str(overrides), "--out", str(out)]
    env = repo_on_path(hidden.parent)
    completed = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stderr.startswith("warning: matplotlib is not installed (pip install 'recbole-duet[bench]')")
    assert "| GRU4Rec | 1 | " in (out / "results.md").read_text() and len(json.loads((out / "results.json").read_text())) == 1
    assert not (out / "metrics.png").exists()


def test_harness_goes_on_from_the_state_a_stopped_training_left(harness, tmp_path, monkeypatch):
    run, out = harness
    # What a harness stopped after GRU4Rec's first epoch leaves behind: its state file under <out>/checkpoints.
    monkeypatch.chdir(tmp_path)
    from benchmarks.run import PROTOCOL
    from recbole_duet.config import Config
    from recbole_duet.quick_start import run_experiment
    from recbole_duet.training.checkpoint import load_checkpoint

    settings = {**PROTOCOL, **yaml.safe_load((tmp_path / "tiny.yaml").read_text()), "seed": 2020}
    config = Config(model="GRU4Rec", dataset="tiny", config_dict={**settings, "data_path": str(tmp_path / "data")})
    state_file = out / "checkpoints" / "tiny-GRU4Rec-2020.state.pth"
    stopped = run_experiment(config, saved=True, state_file=str(state_file))
    seconds_before = load_checkpoint(str(state_file))["elapsed_seconds"]
    _, (record,) = run(seeds=1, models=["GRU4Rec"])
    assert record["resumed_seconds"] == pytest.approx(seconds_before, rel=1e-9) and seconds_before > 0
    assert record["valid"] == stopped["result"]["best_valid_result"] and record["epochs"] == 1
    assert not state_file.exists()  # removed once the record is written


def test_records_from_another_harness_sharing_the_folder_are_kept(tmp_path):
    from benchmarks.run import append_records

    path = str(tmp_path / "results.json")
    append_records(path, [{"model": "GRU4Rec"}])
    (tmp_path / "results.json").write_text(json.dumps([{"model": "GRU4Rec"}, {"model": "SASRec"}]))  # the other one
    assert append_records(path, [{"model": "DUET-GRU4Rec"}]) == [
        {"model": "GRU4Rec"},
        {"model": "SASRec"},
        {"model": "DUET-GRU4Rec"},
    ]
    assert json.loads((tmp_path / "results.json").read_text())[-1] == {"model": "DUET-GRU4Rec"}


def test_the_report_names_every_machine_and_never_mixes_their_seconds():
    from benchmarks.report import machines_line, ratio_lines, summary_table

    gpu = "NVIDIA H100 80GB HBM3, torch 2.11.0"
    adaptation = {"finetune_ms_per_device": 2.0, "generation_ms_p50": 0.5, "payload_bytes": 1024}

    def record(model, seconds, machine=None, seed=2020):
        entry = {"model": model, "seed": seed, "test": {"ndcg@10": 0.05}, "valid": {"ndcg@10": 0.06}, "epochs": 10}
        entry.update(epoch_seconds=seconds, wall_seconds=10 * seconds, adaptation=adaptation if "DUET" in model else None)
        return {**entry, **({"machine": machine} if machine else {})}

    records = [record("SASRec", 60.0), record("DUET-SASRec", 3.0, gpu), record("DUET-SASRec", 4.0, gpu, seed=2021)]
    records = [{k: v for k, v in r.items() if v is not None} for r in records]
    assert machines_line(records) == f"2 runs on {gpu}; 1 run on x86_64, 2 cores (not recorded)"
    table = summary_table(records, ["SASRec", "DUET-SASRec"])
    assert "| DUET-SASRec | 2 | 0.0500 ± 0.0000 | 0.0600 ± 0.0000 | 10.0 ± 0.0 | 3.5 ± 0.7 | 35 ± 7 | 0.5 ± 0 | 1.0 ± 0.0 |" in table
    assert "| 60.0 ± 0.0 |" in table  # one machine: its seconds
    records[2]["machine"] = "another machine"
    assert "| – (2 machines) | – (2 machines) | – (2 machines) |" in summary_table(records, ["DUET-SASRec"])
    assert ratio_lines(records) == [
        "- seed 2020, SASRec: NDCG@10 DUET/backbone = 1.000, epoch time DUET/backbone = – (two machines), "
        "fine-tune/generation time = 4"
    ]
    records[0]["machine"] = gpu
    assert "epoch time DUET/backbone = 0.05," in ratio_lines(records)[0]



def test_fine_tune_time_beside_generation_comes_from_the_finetune_record_of_the_seed():
    from benchmarks.report import ratio_lines

    def record(model, seed, adaptation):
        return {"model": model, "seed": seed, "test": {"ndcg@10": 0.05}, "epoch_seconds": 1.0, "adaptation": adaptation}

    records = [
        record("SASRec", 2020, None),
        record("DUET-SASRec", 2020, {"generation_ms_p50": 0.5}),
        record("Finetune-SASRec", 2020, {"finetune_ms_per_device": 3.0}),
        record("Finetune-SASRec", 2021, {"finetune_ms_per_device": 99.0}),
    ]
    assert ratio_lines(records)[0].endswith("fine-tune/generation time = 6")
    assert ratio_lines(records[:2])[0].endswith("fine-tune/generation time = –")  # no Finetune row to compare


@pytest.mark.parametrize("member, scope", [("Finetune", "dynamic"), ("FinetuneAll", "all")])
def test_finetune_rows_are_the_finetune_model_on_the_layers_checkpoint(member, scope):
    from benchmarks.run import FAMILY_OF, member_model_config, split_name, training_jobs

    assert split_name(f"{member}-SASRec") == (member, "SASRec") and FAMILY_OF[member] == "Layers"
    assert training_jobs([f"{member}-SASRec"]) == [("layers", "SASRec", (f"{member}-SASRec",))]
    training = {"backbone": "SASRec", "duet_inference": "global", "backbone_checkpoint": "b.pth", "seed": 3, "finetune_steps": 2}
    model, config_dict = member_model_config(member, "SASRec", training, "layers.pth")
    assert model == "Finetune"
    assert config_dict == {
        "backbone": "SASRec", "seed": 3, "finetune_steps": 2, "finetune_scope": scope, "cloud_checkpoint": "layers.pth"
    }
    assert member_model_config("Base", "SASRec", training, "duet.pth") is None  # the trained DUET itself, scored globally


def test_the_layers_family_of_din_shares_dins_own_training():
    """DUET(DIN)'s dynamic layers are DIN's MLP, so Layers-DIN is DIN: its family joins DIN's plain training (one
    training for DIN, Layers-DIN and Finetune-DIN), plain trainings first; other backbones keep their own."""
    from benchmarks.run import member_model_config, training_jobs

    jobs = training_jobs(["DUET-DIN", "Layers-DIN", "Finetune-DIN", "DIN", "Layers-SASRec", "SASRec"])
    assert jobs == [
        ("plain", "DIN", ("Layers-DIN", "Finetune-DIN", "DIN")),
        ("plain", "SASRec", ("SASRec",)),
        ("duet", "DIN", ("DUET-DIN",)),
        ("layers", "SASRec", ("Layers-SASRec",)),
    ]
    assert training_jobs(["Finetune-DIN"]) == [("plain", "DIN", ("Finetune-DIN",))]
    plain_din = {"seed": 3, "learning_rate": 0.003}  # a plain training's config names no backbone
    assert member_model_config("Finetune", "DIN", plain_din, "din.pth") == (
        "Finetune", {**plain_din, "finetune_scope": "dynamic", "backbone": "DIN", "cloud_checkpoint": "din.pth"}
    )


CONFIGS = os.path.join(REPO, "benchmarks", "configs")
ABLATIONS = os.path.join(CONFIGS, "ablations")


@pytest.mark.parametrize("name", sorted(os.listdir(ABLATIONS)))
def test_each_ablation_file_sets_valid_duet_keys_and_says_what_it_tests(name):
    """RecBole accepts any key, so a misspelt one would silently train the default for hours."""
    from recbole_duet.model.settings import DUET_KEYS

    with open(os.path.join(ABLATIONS, name), encoding="utf-8") as file:
        text = file.read()
    settings = yaml.safe_load(text)
    assert name.endswith(".yaml") and text.startswith("# Ablation: ")
    assert settings and set(settings) <= set(DUET_KEYS), f"{name}: {sorted(set(settings) - set(DUET_KEYS))}"
    for key, value in settings.items():
        is_valid, expected = DUET_KEYS[key]
        assert is_valid(value), f"{name}: {key} must be {expected}"


@pytest.mark.parametrize("name", sorted(name for name in os.listdir(CONFIGS) if name.endswith(".yaml")))
def test_each_harness_config_file_names_only_keys_recbole_or_the_plugin_reads(name):
    """A file of ``--config-files`` applies to every model of a run that takes hours; a misspelt key would train
    RecBole's default silently (``train_neg_sample_arg`` would leave BPR without its negatives)."""
    from recbole_duet.config import known_config_keys

    with open(os.path.join(CONFIGS, name), encoding="utf-8") as file:
        text = file.read()
    settings = yaml.safe_load(text)
    known = known_config_keys()
    assert text.startswith("#"), f"{name}: say what the file is for in a leading comment"
    assert settings and set(settings) <= known, f"{name}: {sorted(set(settings) - known)}"


def test_families_start_from_the_backbone_run_of_their_seed_and_keep_it_frozen(harness, tmp_path):
    import torch

    run, out = harness
    _, backbones = run(seeds=2, models=["SASRec"], extra=["--lr-grid", "0.0001", "0.01"])
    frozen = os.path.join(CONFIGS, "frozen-backbone.yaml")
    atop = tmp_path / "atop"
    command = [sys.executable, "-m", "benchmarks.run", "--dataset", "tiny", "--seeds", "2"]
    command += ["--data-path", str(tmp_path / "data"), "--models", "DUET-SASRec", "Layers-SASRec", "--lr-grid", "0.01"]
    command += ["--config-files", str(tmp_path / "tiny.yaml"), frozen, "--backbones-from", str(out), "--out", str(atop)]
    completed = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=repo_on_path())
    assert completed.returncode == 0, completed.stderr[-3000:]
    records = json.loads((atop / "results.json").read_text())
    assert len(records) == 4
    best = {
        seed: max((r for r in backbones if r["seed"] == seed), key=lambda r: r["valid"]["ndcg@10"]) for seed in (2020, 2021)
    }
    for record in records:
        expected = out / "models" / f"tiny-SASRec-{record['seed']}-lr{best[record['seed']]['learning_rate']}.pth"
        assert record["config"]["backbone_checkpoint"] == str(expected) and record["config"]["freeze_backbone"] is True
        kept = torch.load(expected, weights_only=True)
        assert json.loads(kept["config"])["seed"] == record["seed"]


def failed_run_from(flag, folder, tmp_path):
    """stderr of a DUET-SASRec family run with ``flag folder`` (``--backbones-from``, ``--cloud-from``), which must fail."""
    command = [sys.executable, "-m", "benchmarks.run", "--dataset", "tiny", "--seeds", "1"]
    command += ["--data-path", str(tmp_path / "data"), "--models", "DUET-SASRec", "--config-files", str(tmp_path / "tiny.yaml")]
    command += [flag, str(folder), "--out", str(tmp_path / "atop")]
    completed = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=repo_on_path())
    assert completed.returncode != 0
    return completed.stderr


def test_backbones_from_a_folder_without_that_backbone_says_so(harness, tmp_path):
    run, out = harness
    run(seeds=1, models=["GRU4Rec"])
    assert f"--backbones-from {out}: no SASRec run of seed 2020 on tiny there" in failed_run_from("--backbones-from", out, tmp_path)


def test_backbones_from_a_run_without_its_kept_model_names_the_missing_file(harness, tmp_path):
    run, out = harness
    _, (record,) = run(seeds=1, models=["SASRec"])  # no grid: the suite's rate, which the record names
    model_file = out / "models" / f"tiny-SASRec-2020-lr{record['learning_rate']}.pth"
    assert model_file.is_file()
    model_file.unlink()
    assert f"--backbones-from {out}: {model_file} is missing" in failed_run_from("--backbones-from", out, tmp_path)


def test_duet_families_learn_on_the_fixed_layers_model_of_their_seed(harness, tmp_path):
    """``--cloud-from``: DUET's cloud model is the Layers run of its seed, so its Base member is that very model."""
    run, out = harness
    _, layers = run(seeds=2, models=["Layers-SASRec"], extra=["--lr-grid", "0.01"])
    command = [sys.executable, "-m", "benchmarks.run", "--dataset", "tiny", "--seeds", "2"]
    command += ["--data-path", str(tmp_path / "data"), "--models", "DUET-SASRec", "Base-SASRec", "--lr-grid", "0.01"]
    command += ["--config-files", str(tmp_path / "tiny.yaml"), "--cloud-from", str(out), "--out", str(tmp_path / "atop")]
    completed = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=repo_on_path())
    assert completed.returncode == 0, completed.stderr[-3000:]
    records = json.loads((tmp_path / "atop" / "results.json").read_text())
    assert sorted((r["model"], r["seed"]) for r in records) == [
        ("Base-SASRec", 2020), ("Base-SASRec", 2021), ("DUET-SASRec", 2020), ("DUET-SASRec", 2021)
    ]
    cloud = {r["seed"]: r for r in layers}
    for record in records:
        expected = out / "models" / f"tiny-Layers-SASRec-{record['seed']}-lr0.01.pth"
        assert record["config"]["cloud_checkpoint"] == str(expected)
        if record["model"] == "Base-SASRec":
            assert record["test"] == pytest.approx(cloud[record["seed"]]["test"], abs=1e-6)


def test_cloud_from_a_folder_without_layers_runs_says_so(harness, tmp_path):
    run, out = harness
    run(seeds=1, models=["SASRec"])
    assert f"--cloud-from {out}: no Layers-SASRec run of seed 2020 on tiny there" in failed_run_from("--cloud-from", out, tmp_path)


def test_only_seeds_runs_just_those_seeds(harness):
    run, _ = harness
    _, records = run(seeds=2, models=["SASRec"], extra=["--lr-grid", "0.01", "--only-seeds", "2021"])
    assert [(r["seed"], r["learning_rate"]) for r in records] == [(2021, 0.01)]


def test_only_seeds_outside_the_seeds_is_refused(harness, tmp_path):
    _, out = harness
    command = [sys.executable, "-m", "benchmarks.run", "--dataset", "tiny", "--seeds", "2"]
    command += ["--models", "SASRec", "--only-seeds", "2022", "--out", str(out)]
    completed = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=repo_on_path())
    assert completed.returncode != 0
    assert "--only-seeds [2022]: not among the --seeds 2 ([2020, 2021])" in completed.stderr


def test_the_time_split_protocol_and_the_parameter_age_curve(tmp_path):
    """The harness under --protocol time-split keeps one row per test interaction (a user has several), and
    param_age.py scores its DUET at each age: age 0 is the record itself, the global layers are its Base."""
    data_path, _ = write_interleaved_dataset(str(tmp_path / "data"), n_users=60)
    overrides = tmp_path / "tiny.yaml"
    settings = {**TINY_MODEL_CONFIG, "load_col": {"inter": ["user_id", "item_id", "timestamp"]}, "MAX_ITEM_LIST_LENGTH": 8,
                "epochs": 1, "train_batch_size": 64, "state": "WARNING"}
    overrides.write_text(yaml.safe_dump(settings))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "benchmarks.run", "--dataset", "clock", "--seeds", "1"]
    command += ["--protocol", "time-split", "--data-path", data_path, "--models", "DUET-SASRec", "Base-SASRec"]
    command += ["--config-files", str(overrides), "--out", str(out)]
    completed = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=repo_on_path())
    assert completed.returncode == 0, completed.stderr[-3000:]
    records = {r["model"]: r for r in json.loads((out / "results.json").read_text())}
    assert records["DUET-SASRec"]["config"]["eval_args"]["split"] == {"TS": [0.8, 0.1, 0.1]}
    base = np.load(out / records["Base-SASRec"]["per_user_file"])
    assert len(base["users"]) > len(np.unique(base["users"]))  # several test interactions per user
    report = (out / "results.md").read_text()
    assert "per-user mean difference" in report and "Per-user means (each user's cases averaged first" in report

    command = [sys.executable, "-m", "benchmarks.param_age", "--folder", str(out)]
    command += ["--data-path", data_path, "--ages", "0", "2"]
    completed = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=repo_on_path())
    assert completed.returncode == 0, completed.stderr[-3000:]
    rows = {(r["setting"], r["metric"]): r for r in json.loads((out / "param_age.json").read_text())}
    assert set(rows) == {(s, m) for s in (0, 2, "global") for m in ("ndcg@10", "recall@10")}
    fresh = rows[0, "ndcg@10"]
    assert fresh["difference"] == 0 and fresh["ci95"] == [0, 0]
    assert fresh["mean"] == pytest.approx(records["DUET-SASRec"]["test"]["ndcg@10"], abs=1e-4)
    assert rows["global", "ndcg@10"]["mean"] == pytest.approx(float(base["ndcg@10"].mean()), abs=1e-6)
    assert (out / "param_age.md").read_text().count("| DUET-SASRec |") == 6

    # request_policies.py replays the same test period: always is the record, never its Base (the global layers)
    command = [sys.executable, "-m", "benchmarks.request_policies", "--folder", str(out), "--data-path", data_path]
    command += ["--policies", "always", "never", "every_k:2", "drift:0.05"]
    completed = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=repo_on_path())
    assert completed.returncode == 0, completed.stderr[-3000:]
    rows = json.loads((out / "request_policies.json").read_text())
    pooled = {f"{r['policy']}:{r['setting']}": r for r in rows if r["seed"] == "pooled"}
    assert len(rows) == 8 and set(pooled) == {"always:None", "never:None", "every_k:2", "drift:0.05"}
    assert pooled["always:None"]["ndcg@10"] == pytest.approx(records["DUET-SASRec"]["test"]["ndcg@10"], abs=1e-4)
    assert pooled["never:None"]["ndcg@10"] == pytest.approx(float(base["ndcg@10"].mean()), abs=1e-6)
    cases_per_user = np.unique(base["users"], return_counts=True)[1]
    every_2 = pooled["every_k:2"]
    assert every_2["request_rate"] == pytest.approx(np.ceil(cases_per_user / 2).sum() / cases_per_user.sum())
    assert pooled["always:None"]["request_rate"] == 1 and pooled["never:None"]["request_rate"] == 0
    assert pooled["never:None"]["bytes_per_interaction"] == 0 < every_2["bytes_per_interaction"]
    assert every_2["bytes_per_interaction"] == pytest.approx(every_2["request_rate"] * pooled["always:None"]["bytes_per_interaction"])
    assert pooled["always:None"]["ndcg@10_minus_always"] == 0 and pooled["always:None"]["ndcg@10_ci95"] == [0, 0]
    assert (out / "request_policies.md").read_text().count("| DUET-SASRec |") == 4


def test_din_under_a_sampled_evaluation_reports_the_papers_pointwise_metrics(tmp_path):
    """DIN and DUET(DIN) under uni10 (RecBole's DIN protocol at a tiny scale): each record's test result holds gauc,
    auc and logloss beside the ranking metrics, the per-user files their columns, and the report compares them."""
    data_path = write_atomic_dataset(str(tmp_path / "data"), item_file=True)
    overrides = tmp_path / "din.yaml"
    settings = {
        **TINY_MODEL_CONFIG, "load_col": {"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id", "category"]},
        "embedding_size": 4, "mlp_hidden_size": [16, 8], "MAX_ITEM_LIST_LENGTH": 8, "epochs": 1,
        "train_batch_size": 64, "state": "WARNING",
        "eval_args": {"mode": "uni10"},  # the split is --protocol's (leave-one-out here)
    }
    overrides.write_text(yaml.safe_dump(settings))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "benchmarks.run", "--dataset", "tiny", "--seeds", "1", "--data-path", data_path]
    command += ["--models", "DIN", "DUET-DIN", "Layers-DIN", "Finetune-DIN", "--config-files", str(overrides)]
    completed = subprocess.run(
        command + ["--out", str(out)], cwd=tmp_path, capture_output=True, text=True, timeout=600, env=repo_on_path()
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "2 training runs to do" in completed.stdout  # DIN's (with Layers-DIN and Finetune-DIN) and DUET-DIN's
    records = {r["model"]: r for r in json.loads((out / "results.json").read_text())}
    assert set(records) == {"DIN", "DUET-DIN", "Layers-DIN", "Finetune-DIN"}
    # Layers-DIN is DIN's training, recorded under its name; Finetune-DIN tunes that training's kept model
    assert records["Layers-DIN"]["training"] == records["Finetune-DIN"]["training"] == "DIN"
    assert "training" not in records["DIN"] and records["Layers-DIN"]["test"] == records["DIN"]["test"]
    assert sorted(path.name.split("-2020")[0] for path in (out / "models").iterdir()) == ["tiny-DIN", "tiny-DUET-DIN"]
    assert records["Finetune-DIN"]["test"] != records["DIN"]["test"]  # each device tuned its MLP
    for record in records.values():
        assert {"gauc", "auc", "logloss"} <= set(record["test"]) and 0 < record["test"]["logloss"]
        with np.load(out / record["per_user_file"]) as per_user:
            assert per_user["gauc"].mean() == pytest.approx(record["test"]["gauc"])  # one target per user
    markdown = (out / "results.md").read_text()
    assert "test gauc | test auc | test logloss" in markdown
    for metric in ("gauc", "logloss"):
        assert f"| DUET-DIN | DIN | {metric} | " in markdown and f"| DUET-DIN | Layers-DIN | {metric} | " in markdown


def test_a_config_file_samples_under_either_protocol_and_cannot_change_its_split():
    from benchmarks.run import protocol_eval_args

    sampled = [("din.yaml", {"eval_args": {"mode": "uni100"}}), ("other.yaml", {"epochs": 3})]
    assert protocol_eval_args("time-split", sampled) == {"split": {"TS": [0.8, 0.1, 0.1]}, "order": "TO", "mode": "uni100"}
    assert protocol_eval_args("leave-one-out", sampled)["split"] == {"LS": "valid_and_test"}
    # restating the protocol's own split is allowed; another one is refused, naming the file and the key
    assert protocol_eval_args("leave-one-out", [("a.yaml", {"eval_args": {"split": {"LS": "valid_and_test"}}})])
    with pytest.raises(ValueError, match=r"^loo\.yaml: eval_args\.split \{'LS': 'valid_and_test'\} is not --protocol time-split's"):
        protocol_eval_args("time-split", [("loo.yaml", {"eval_args": {"split": {"LS": "valid_and_test"}, "mode": "uni100"}})])
    with pytest.raises(ValueError, match="eval_args.order"):
        protocol_eval_args("time-split", [("ro.yaml", {"eval_args": {"order": "RO"}})])


def test_valid_noise_summarises_draws_by_hand():
    from benchmarks.valid_noise import summary

    result = summary([0.30, 0.32, 0.34, 0.36])
    assert result["mean"] == pytest.approx(0.33)
    assert result["sd"] == pytest.approx(0.0258199, abs=1e-6)  # sqrt(((.03^2 + .01^2) * 2) / 3)
    assert (result["min"], result["max"], result["draws"]) == (0.30, 0.36, 4)


def test_valid_noise_redraws_only_the_negatives_of_each_kept_model(harness, tmp_path):
    """Each kept model validated under numpy seeds 0, 1, ...: a second run repeats the same draws exactly."""
    run, out = harness
    sampled = tmp_path / "uni5.yaml"
    sampled.write_text(yaml.safe_dump({"eval_args": {"mode": "uni5"}}))
    run(1, ["SASRec", "DUET-SASRec", "Base-SASRec"], extra=["--config-files", str(tmp_path / "tiny.yaml"), str(sampled)])

    def valid_noise(*flags):
        command = [sys.executable, "-m", "benchmarks.valid_noise", "--folder", str(out), *flags]
        return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=repo_on_path())

    completed = valid_noise("--draws", "3")
    assert completed.returncode == 0, completed.stderr[-3000:]
    rows = {row["model"]: row for row in json.loads((out / "valid_noise.json").read_text())}
    assert set(rows) == {"SASRec", "DUET-SASRec"}  # Base has no model of its own: it is DUET's
    for row in rows.values():
        assert len(row["scores"]) == 3 and row["min"] <= row["mean"] <= row["max"]
    assert len(set(rows["SASRec"]["scores"])) > 1  # five negatives per user, drawn three ways, move some ranks
    assert valid_noise("--draws", "2", "--models", "SASRec").returncode == 0
    again = json.loads((out / "valid_noise.json").read_text())
    assert [row["scores"] for row in again] == [rows["SASRec"]["scores"][:2]]
    refused = valid_noise("--draws", "1")
    assert refused.returncode != 0 and "--draws 1: at least 2" in refused.stderr
    nothing_kept = valid_noise("--draws", "2", "--models", "Base-SASRec")
    assert nothing_kept.returncode != 0 and "no record with a kept model in models/ among ['Base-SASRec']" in nothing_kept.stderr


def test_under_fixed_valid_negatives_base_is_validated_on_its_cloud_stage_s_negatives(tmp_path):
    """Cloud first keeps the cloud model fixed while the generator learns, so Base (DUET scored with its global layers,
    validated by the harness after training) is the cloud stage's best model: with ``fixed_valid_negatives`` its
    validation draws the negatives the cloud stage's did, and the two results are equal."""
    data_path = write_atomic_dataset(str(tmp_path / "data"))
    overrides = tmp_path / "fixed.yaml"
    settings = {
        **TINY_MODEL_CONFIG, "load_col": {"inter": ["user_id", "item_id", "timestamp"]}, "MAX_ITEM_LIST_LENGTH": 8,
        "epochs": 1, "train_batch_size": 64, "state": "WARNING",
        "eval_args": {"mode": "uni10"}, "fixed_valid_negatives": True,
    }
    overrides.write_text(yaml.safe_dump(settings))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "benchmarks.run", "--dataset", "tiny", "--seeds", "1", "--data-path", data_path]
    command += ["--models", "DUET-SASRec", "Base-SASRec", "--config-files", str(overrides), "--out", str(out)]
    completed = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=repo_on_path())
    assert completed.returncode == 0, completed.stderr[-3000:]
    base = next(r for r in json.loads((out / "results.json").read_text()) if r["model"] == "Base-SASRec")
    assert base["config"]["fixed_valid_negatives"] is True
    assert base["valid"] == base["cloud_stage"]["valid"]
