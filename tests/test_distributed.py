"""Distributed training on CPU: 2-process gloo runs on loopback, on the tiny synthetic dataset.

The spawned processes run the functions of this module (``mp.spawn`` imports it in each of them) and leave
what they end with in files for the test to compare.
"""

import json
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import build_pipeline, write_atomic_dataset
from test_end_to_end import REPO, assert_ranking_result, run_cli, write_config_file

from recbole_duet import data as duet_data
from recbole_duet.config import Config
from recbole_duet.data import ensure_dataset_files
from recbole_duet.errors import ConfigError, DatasetNotFoundError
from recbole_duet.model import warm_start
from recbole_duet.quick_start import run_experiment
from recbole_duet.training import trainer as trainer_module
from recbole_duet.training.trainer import get_trainer

WORLD_SIZE = 2


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def distributed_keys(nproc=WORLD_SIZE):
    """What :func:`recbole_duet.quick_start.run` adds to the config of each process it starts."""
    return {"world_size": nproc, "nproc": nproc, "ip": "127.0.0.1", "port": free_port(), "offset": 0}


def spawn(function, *args):
    mp.spawn(function, args=args, nprocs=WORLD_SIZE, join=True)


def _never_read(path, map_location=None):
    raise AssertionError(f"a rank other than 0 read checkpoint file {path}")


def _run_experiment_as_rank(rank, config_dict, out_dir):
    """One process of a run, as run_recbole_duets starts it, with a checkpoint folder of its own, as if on a
    machine of its own (only rank 0 may read a checkpoint file); keeps its final parameters, its optimizer's
    state, its result and the cloud model it named."""
    torch.set_num_threads(1)
    if rank != 0:
        warm_start.load_checkpoint = trainer_module.load_checkpoint = _never_read
    checkpoint_dir = os.path.join(out_dir, f"saved-rank{rank}")
    config = Config(
        model="DUET", dataset="tiny", config_dict={**config_dict, "local_rank": rank, "checkpoint_dir": checkpoint_dir}
    )
    experiment = run_experiment(config)
    trainer = experiment["trainer"]
    torch.save(trainer.model.state_dict(), os.path.join(out_dir, f"rank{rank}.pth"))
    torch.save(trainer.optimizer.state_dict()["state"], os.path.join(out_dir, f"optimizer-rank{rank}.pth"))
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w", encoding="utf-8") as file:
        json.dump({**experiment["result"], "cloud_checkpoint": trainer.config["cloud_checkpoint"]}, file)
    dist.destroy_process_group()


def _one_step_as_rank(rank, config_dict, out_dir):
    """One training step of one process (one epoch of one batch per rank); keeps its parameters."""
    torch.set_num_threads(1)
    config, (train_data, _, _), model = build_pipeline({**config_dict, "local_rank": rank})
    get_trainer(config["MODEL_TYPE"], config["model"])(config, model).fit(train_data, saved=False)
    torch.save(model.state_dict(), os.path.join(out_dir, f"rank{rank}.pth"))
    dist.destroy_process_group()


def load_rank(out_dir, rank, prefix=""):
    return torch.load(os.path.join(out_dir, f"{prefix}rank{rank}.pth"), weights_only=True)


def assert_ranks_end_equal_and_trained(out_dir, initial):
    """Both ranks ended with the same state (parameters and buffers) and every generator weight moved from
    ``initial``; return rank 0's state."""
    rank0, rank1 = load_rank(out_dir, 0), load_rank(out_dir, 1)
    assert rank0.keys() == rank1.keys() == initial.keys()
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), f"ranks disagree on {name}"
    generator = [name for name in rank0 if name.startswith(("generator.", "stabilizer."))]
    assert generator and all(not torch.equal(rank0[name], initial[name]) for name in generator)
    return rank0


def test_two_gloo_processes_end_with_identical_parameters_and_rank_0_reports_test_metrics(tiny_config_dict, run_dir):
    config_dict = {**tiny_config_dict, "backbone": "SASRec", "epochs": 2, **distributed_keys()}
    spawn(_run_experiment_as_rank, config_dict, str(run_dir))

    initial = build_pipeline(tiny_config_dict)[2].state_dict()  # rank 0's initial model, which DDP broadcasts
    rank0 = assert_ranks_end_equal_and_trained(run_dir, initial)
    # The best checkpoint, loaded at the end, comes from rank 0; Adam's moments show every step's averaged
    # gradients were the same on both ranks, for every parameter the generator stage trains.
    optimizer0, optimizer1 = load_rank(run_dir, 0, "optimizer-"), load_rank(run_dir, 1, "optimizer-")
    assert len(optimizer0) == sum(name.startswith(("generator.", "stabilizer.")) for name in rank0)
    for index, moments in optimizer0.items():
        for key in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(moments[key], optimizer1[index][key]), f"ranks took different steps ({index})"
    results = []
    for rank in range(WORLD_SIZE):
        with open(run_dir / f"rank{rank}.json", encoding="utf-8") as file:
            results.append(json.load(file))
    cloud_files = [result.pop("cloud_checkpoint") for result in results]
    assert_ranking_result(results[0])
    # training_order cloud_first: only rank 0 wrote the cloud model and the run's best model; rank 1 learned on
    # that cloud model and tested the best model all the same, without a file of its own (nor reading one).
    (cloud_file,) = (run_dir / "saved-rank0" / "cloud").iterdir()
    assert cloud_files == [str(cloud_file)] * WORLD_SIZE
    assert len(list((run_dir / "saved-rank0").glob("DUET-*.pth"))) == 1
    assert list((run_dir / "saved-rank1").rglob("*.pth")) == []


def step_config(tiny_config_dict, run_dir):
    """One batch holding the whole training set (of 202 samples: even, see below), plain SGD, no dropout."""
    return {
        **tiny_config_dict,
        "data_path": write_atomic_dataset(str(run_dir / "even"), seed=1),
        "backbone": "GRU4Rec",
        "dropout_prob": 0.0,
        "learner": "sgd",
        "learning_rate": 0.5,
        "train_batch_size": 4096,
    }


def full_batch_loss(config_dict, state_dict):
    """DUET's loss on the whole training set (one batch), for the model holding ``state_dict``."""
    _, (train_data, _, _), model = build_pipeline(config_dict)
    model.load_state_dict(state_dict)
    model.eval()
    (batch,) = list(train_data)
    with torch.no_grad():
        return sum(model.calculate_loss(batch)).item(), len(batch)


def test_two_processes_and_one_with_the_same_global_batch_reach_the_same_loss_after_one_step(
    tiny_config_dict, run_dir
):
    config_dict = step_config(tiny_config_dict, run_dir)
    (run_dir / "saved").mkdir()
    config, (train_data, _, _), model = build_pipeline(config_dict)
    loss_before, samples = full_batch_loss(config_dict, model.state_dict())
    # RecBole gives each of the N processes train_batch_size // N samples a step and pads an odd training set
    # with repeated samples: with an even one, the two halves together are exactly the one-process batch.
    assert samples % WORLD_SIZE == 0 and samples <= config_dict["train_batch_size"]

    get_trainer(config["MODEL_TYPE"], config["model"])(config, model).fit(train_data, saved=False)
    loss_one_process, _ = full_batch_loss(config_dict, model.state_dict())
    spawn(_one_step_as_rank, {**config_dict, **distributed_keys()}, str(run_dir))
    loss_two_processes, _ = full_batch_loss(config_dict, load_rank(run_dir, 0))

    assert abs(loss_before - loss_one_process) > 1e-2  # the step moved the loss well beyond the tolerance
    assert loss_two_processes == pytest.approx(loss_one_process, abs=1e-5)
    for name, value in load_rank(run_dir, 1).items():  # gradients were averaged: both ranks took one step
        assert torch.equal(value, load_rank(run_dir, 0)[name]), f"ranks disagree on {name}"
    for name, value in load_rank(run_dir, 0).items():
        torch.testing.assert_close(value, model.state_dict()[name], atol=1e-5, rtol=1e-5)


def test_runner_script_trains_a_plain_recbole_model_with_two_processes(tiny_config_dict, run_dir):
    config_file = write_config_file(run_dir / "tiny.yaml", {**tiny_config_dict, "state": "INFO"})
    args = ["--model=SASRec", "--dataset=tiny", "--config_files", config_file, "--nproc=2", "--ip=127.0.0.1"]
    completed = run_cli([*args, f"--port={free_port()}"], cwd=run_dir, script=os.path.join(REPO, "run_recbole_duet.py"))
    assert completed.returncode == 0, completed.stderr
    log = completed.stdout + completed.stderr
    assert log.count("test result") == 1  # logged by rank 0 only


def test_processes_of_a_distributed_run_never_download(tmp_path, monkeypatch):
    monkeypatch.setattr(duet_data, "_download", lambda *args: pytest.fail("a distributed process downloaded"))
    config = {"dataset": "ml-1m", "data_path": str(tmp_path), "benchmark_filename": None, "single_spec": False}
    with pytest.raises(DatasetNotFoundError, match="distributed run do not download"):
        ensure_dataset_files(config)


def test_gpu_runs_need_one_gpu_per_process(run_dir, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # RecBole's Config sets it: restore it after the test
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(ConfigError, match="one GPU id per process"):
        Config(config_dict={"nproc": 2, "gpu_id": "0"})
    assert Config(config_dict={"nproc": 2, "gpu_id": "0,1"})["device"].type == "cuda"
