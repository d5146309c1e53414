"""Trainings that survive being stopped: the whole training state after every validated epoch, resumed exactly.

RecBole checkpoints only its best model, which is not where a stopped training should go on from, and leaves
out what a resumed run needs to continue as if it had never stopped. A *training-state file* holds the last
validated epoch's model and optimizer, the early-stopping counters, the best validation result, every epoch's
loss and validation score, the seconds spent so far and the random streams (torch's, the training loader's
shuffling generator, numpy's and Python's), plus the path of the trainer's best-model checkpoint. Resumed from it,
a training sees the same batches and dropout masks as the uninterrupted one would have. It is written atomically
in the safe checkpoint format (:mod:`recbole_duet.training.checkpoint`), by rank 0 only.
"""

import os
import random

import numpy as np
import torch
from recbole.trainer import Trainer

from recbole_duet.training.checkpoint import load_checkpoint, save_checkpoint
from recbole_duet.training.distributed import is_rank_zero
from recbole_duet.training.run_log import plain_metrics


def _random_streams(train_data):
    numpy_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "train_loader": train_data.generator.get_state(),
        "numpy": [numpy_state[0], torch.from_numpy(numpy_state[1].astype(np.int64)), *numpy_state[2:]],
        "python": list(random.getstate()),
    }


def _restore_random_streams(streams, train_data):
    torch.set_rng_state(streams["torch"])
    train_data.generator.set_state(streams["train_loader"])
    name, keys, *rest = streams["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    version, internal, gauss = streams["python"]
    random.setstate((version, tuple(internal), gauss))


def keeps_training_state(trainer):
    """Whether ``trainer`` runs RecBole's own ``Trainer.fit`` loop, whose per-epoch callback saves the state
    (trainers with their own loop, e.g. the decision trees' or the pre-training ones, resume per training)."""
    return isinstance(trainer, Trainer) and type(trainer).fit is Trainer.fit


def save_training_state(trainer, train_data, path, epoch, elapsed_seconds, valid_scores):
    """Write the state after validated epoch ``epoch`` (RecBole's ``fit`` callback runs after its bookkeeping);
    ``valid_scores`` maps each validated epoch to its score, which RecBole keeps only for the best one."""
    if not is_rank_zero(trainer.config):
        return
    state = {
        "epoch": epoch,
        "cur_step": trainer.cur_step,
        "best_valid_score": float(trainer.best_valid_score),
        "best_valid_result": None if trainer.best_valid_result is None else plain_metrics(trainer.best_valid_result),
        "best_model_file": os.path.abspath(trainer.saved_model_file),  # a resumed run may start elsewhere
        "train_loss": {int(key): value for key, value in trainer.train_loss_dict.items()},
        "valid_scores": {int(key): float(value) for key, value in valid_scores.items()},
        "elapsed_seconds": elapsed_seconds,
        "state_dict": trainer.model.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "random_streams": _random_streams(train_data),
    }
    save_checkpoint(state, path)


def resume_training_state(trainer, train_data, path):
    """Put ``trainer`` (fresh, same config) where the state file left it.

    Returns:
        tuple: the seconds already spent and the validated epochs' scores (empty from a state file written before
        they were kept).
    """
    state = load_checkpoint(path, map_location=trainer.device)
    trainer.model.load_state_dict(state["state_dict"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.start_epoch = state["epoch"] + 1
    trainer.cur_step = state["cur_step"]
    trainer.best_valid_score = state["best_valid_score"]
    trainer.best_valid_result = state["best_valid_result"]
    trainer.saved_model_file = state["best_model_file"]
    trainer.train_loss_dict = dict(state["train_loss"])
    _restore_random_streams(state["random_streams"], train_data)
    return state["elapsed_seconds"], dict(state.get("valid_scores", {}))


def training_finished(trainer):
    """Whether a resumed trainer has nothing left to train: its epoch budget is spent or early stopping fired."""
    return trainer.start_epoch >= trainer.epochs or trainer.cur_step > trainer.stopping_step
