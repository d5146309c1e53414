"""RecBole trainers with safe, atomic checkpoints and distributed training on CPUs as well as GPUs.

:func:`get_trainer` returns RecBole's trainer class for a model with three mixins:

* :class:`DistributedMixin` (every ``Trainer``): RecBole's ``AbstractTrainer`` converts batch norm to
  ``SyncBatchNorm`` and wraps the model in ``DistributedDataParallel(device_ids=[local_rank])``, both of which
  fail on CPU; the mixin wraps it for the run's device instead
  (:func:`recbole_duet.training.distributed.distributed_model`).
  Gradient synchronisation is RecBole's: every step adds ``sync_grad_loss`` (zero times every parameter) so
  each parameter, the generator's included, gets a gradient on every rank and DDP can average them.
* :class:`ParameterGroupsMixin` (every ``Trainer``): the optimizer takes the model's own parameter groups when
  it has them (DUET's generator at its own learning rate).
* :class:`~recbole_duet.training.sampled_validation.FixedValidNegativesMixin` (every ``Trainer``): with
  ``fixed_valid_negatives`` every validation of a run draws the same sampled negatives.
* :class:`BalancedThreadsMixin` (every ``Trainer``): before each training epoch of a single-process run torch
  gets the cores that no other job is using (:mod:`recbole_duet.training.threads`).
* :class:`SafeCheckpointMixin` (trainers using ``Trainer``'s own checkpoint logic; decision trees and others
  keep theirs): checkpoints from :mod:`recbole_duet.training.checkpoint`, written by rank 0 only; in a distributed run
  rank 0 reads them and hands them to the other ranks, which may sit on machines without the file.
"""

import json

from recbole.trainer import Trainer
from recbole.utils import get_trainer as get_recbole_trainer
from recbole.utils import set_color
from torch import nn

from recbole_duet.errors import CheckpointError
from recbole_duet.training.checkpoint import (
    config_to_json,
    decode_other_parameters,
    encode_other_parameters,
    load_checkpoint,
    save_checkpoint,
)
from recbole_duet.training.distributed import distributed_model, from_rank_zero, is_rank_zero
from recbole_duet.training.sampled_validation import FixedValidNegativesMixin
from recbole_duet.training.threads import balance_threads


class DistributedMixin:
    """Wraps the model for ``DistributedDataParallel`` on the run's device, CPU or GPU."""

    def __init__(self, config, model):
        if config["single_spec"]:
            super().__init__(config, model)
            return
        # AbstractTrainer.__init__ wraps the model for a GPU whenever single_spec is off: hide it from it.
        config["single_spec"] = True
        try:
            super().__init__(config, model)
        finally:
            config["single_spec"] = False
        self.model, self.distributed_model = distributed_model(self.model, config)


def plain_other_parameters(model):
    """The model's ``other_parameter()`` without submodules, numpy and scipy values stored as tensors.

    RecBole models may list a submodule there (DIN lists its embedding layer); its weights are already in
    the state dict, and pickling the module object would make the checkpoint unloadable with
    ``weights_only=True``.
    """
    parameters = {name: value for name, value in model.other_parameter().items() if not isinstance(value, nn.Module)}
    return encode_other_parameters(parameters)


class SafeCheckpointMixin:
    """Replaces the places where ``Trainer`` and the pre-training trainers pickle or unpickle checkpoints."""

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        if not is_rank_zero(self.config):
            return
        saved_model_file = kwargs.pop("saved_model_file", self.saved_model_file)
        state = {
            "config": config_to_json(self.config),
            "epoch": epoch,
            "cur_step": self.cur_step,
            "best_valid_score": float(self.best_valid_score),
            "state_dict": self.model.state_dict(),
            "other_parameter": plain_other_parameters(self.model),
            "optimizer": self.optimizer.state_dict(),
        }
        save_checkpoint(state, saved_model_file)
        if verbose:
            self.logger.info(set_color("Saving current", "blue") + f": {saved_model_file}")

    def _read_checkpoint(self, checkpoint_file):
        if self.config["single_spec"]:
            return load_checkpoint(checkpoint_file, map_location=self.device)
        return from_rank_zero(lambda: load_checkpoint(checkpoint_file, map_location="cpu"), CheckpointError)

    def _load_model_state(self, checkpoint_file):
        checkpoint = self._read_checkpoint(checkpoint_file)
        self.model.load_state_dict(checkpoint["state_dict"])
        self.model.load_other_parameter(decode_other_parameters(checkpoint.get("other_parameter")))
        return checkpoint

    def save_pretrained_model(self, epoch, saved_model_file):
        """Pre-training trainers (S3Rec, RaCT): the pre-trained model in the same safe format, which the models'
        own ``torch.load(pre_model_path)`` opens under torch's ``weights_only`` default."""
        self._save_checkpoint(epoch, verbose=False, saved_model_file=saved_model_file)
        self.saved_model_file = saved_model_file

    def resume_checkpoint(self, resume_file):
        resume_file = str(resume_file)
        self.saved_model_file = resume_file
        checkpoint = self._load_model_state(resume_file)
        self.start_epoch = checkpoint["epoch"] + 1
        self.cur_step = checkpoint["cur_step"]
        self.best_valid_score = checkpoint["best_valid_score"]
        saved_model = json.loads(checkpoint["config"])["model"]
        if saved_model.lower() != self.config["model"].lower():
            self.logger.warning(
                f"Checkpoint '{resume_file}' was trained as model '{saved_model}', this run is "
                f"'{self.config['model']}': loading its state_dict may fail."
            )
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.logger.info(f"Checkpoint loaded. Resume training from epoch {self.start_epoch}")

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if eval_data and load_best_model:
            checkpoint_file = model_file or self.saved_model_file
            self._load_model_state(checkpoint_file)
            self.logger.info(f"Loading model structure and parameters from {checkpoint_file}")
        return super().evaluate(eval_data, load_best_model=False, show_progress=show_progress)


class ParameterGroupsMixin:
    """Builds the optimizer over the model's own parameter groups when it has any (DUET's
    ``generator_lr_scale``); RecBole's ``_build_optimizer`` takes one learning rate for every parameter."""

    def _build_optimizer(self, **kwargs):
        groups_of = getattr(self.model, "optimizer_parameter_groups", None)
        if "params" not in kwargs and groups_of is not None:
            groups = groups_of(kwargs.get("learning_rate", self.learning_rate))
            if groups is not None:
                kwargs["params"] = groups
        return super()._build_optimizer(**kwargs)


class BalancedThreadsMixin:
    """Balances torch's threads against the machine's other work before every training epoch; a distributed
    run keeps the split of the cores it started with (:func:`recbole_duet.quick_start.run`)."""

    def _train_epoch(self, *args, **kwargs):
        if self.config["single_spec"]:
            balance_threads()
        return super()._train_epoch(*args, **kwargs)


def get_trainer(model_type, model_name):
    """RecBole's trainer class for this model, able to train distributed on CPU, with safe checkpoints where
    it uses Trainer's own."""
    trainer_class = get_recbole_trainer(model_type, model_name)
    if not issubclass(trainer_class, Trainer):
        return trainer_class
    mixins = (BalancedThreadsMixin, DistributedMixin, ParameterGroupsMixin, FixedValidNegativesMixin)
    if trainer_class._save_checkpoint is Trainer._save_checkpoint:
        mixins = (SafeCheckpointMixin, *mixins)
    return type(trainer_class.__name__, (*mixins, trainer_class), {})
