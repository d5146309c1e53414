"""torch's threads balanced against the machine's other work (recbole_duet.training.threads), with the machine faked."""

import pytest
import torch

from recbole_duet.config import Config
from recbole_duet.quick_start import run_experiment
from recbole_duet.training import trainer as trainer_module
from recbole_duet.training.threads import balance_threads, balanced_thread_count, busy_elsewhere, procs_running


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("cores, others, threads", [(2, 0, 2), (2, 1, 1), (2, 7, 1), (16, 3, 13)])
def test_torch_gets_the_cores_left_and_at_least_one(cores, others, threads):
    assert balanced_thread_count(cores, others) == threads


def test_the_count_elsewhere_is_the_median_reading_less_the_asking_thread():
    readings = iter([3, 1, 1, 5, 2])
    assert busy_elsewhere(read=lambda: next(readings), sleep=lambda s: None) == 1  # readings less one: 2,0,0,4,1
    assert busy_elsewhere(read=lambda: None, sleep=lambda s: None) is None
    assert busy_elsewhere(read=lambda: 0, sleep=lambda s: None) == 0


def test_the_kernels_count_includes_the_asking_thread():
    assert procs_running() >= 1


def test_torch_threads_follow_the_machine(restore_threads):
    assert balance_threads(environ={}, busy=lambda: 1, cores=lambda: 2) == 1 and torch.get_num_threads() == 1
    assert balance_threads(environ={}, busy=lambda: 0, cores=lambda: 2) == 2 and torch.get_num_threads() == 2
    assert balance_threads(environ={}, busy=lambda: None, cores=lambda: 2) is None and torch.get_num_threads() == 2


def test_a_count_the_user_fixed_is_kept(restore_threads):
    torch.set_num_threads(1)
    assert balance_threads(environ={"OMP_NUM_THREADS": "1"}, busy=lambda: 0, cores=lambda: 8) is None
    assert torch.get_num_threads() == 1


def test_the_trainer_balances_before_every_epoch(tiny_config_dict, monkeypatch):
    calls = []
    monkeypatch.setattr(trainer_module, "balance_threads", lambda: calls.append(torch.get_num_threads()))
    run = run_experiment(Config(model="SASRec", dataset="tiny", config_dict={**tiny_config_dict, "epochs": 3}))
    assert run["epochs"] == 3 and len(calls) == 3
