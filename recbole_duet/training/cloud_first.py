"""DUET's two trainings in one run (``training_order: cloud_first``, the default for next-item backbones).

The paper's flow trains the cloud model first (the Universal Meta Network: the backbone with its dynamic
layers as ordinary global layers) and then the parameter generator on top of it. Trained that way, with the
cloud model early-stopped on its own validation and then kept fixed while the generator learns, DUET beat joint
training on Beauty's validation for both SASRec and GRU4Rec (docs/study-log.md). This module describes the two
stages of such a run as configs derived from the user's; :func:`recbole_duet.quick_start.run_experiment` runs them:

1. the **cloud stage**: DUET with ``duet_inference: global`` (``L_umn`` alone), its best model kept under
   ``<checkpoint_dir>/cloud/``;
2. the **generator stage**: DUET with that model as its ``cloud_checkpoint`` (backbone and global layers loaded
   and kept fixed, the generated update starting at zero), which is the run's model and result.

A run that already names a ``cloud_checkpoint``, scores with the global layers or by fine-tuning
(``duet_inference`` other than ``generated``), or uses ``training_order: joint`` is one training, as before.
"""

import copy
import os

from recbole_duet.errors import CheckpointError
from recbole_duet.training.distributed import from_rank_zero
from recbole_duet.training.starting_model import declared


def trains_cloud_first(config):
    """Whether ``config``'s model class declares a run of it to be the cloud model's training, then the
    generator's (``DUETBase.trains_cloud_first``)."""
    return declared(config, "trains_cloud_first")


def _with_settings(config, **settings):
    """A copy of ``config`` with ``settings`` changed; the original is left as it was."""
    staged = copy.copy(config)
    staged.final_config_dict = {**config.final_config_dict, **settings}
    return staged


def cloud_stage_config(config):
    """The cloud model's training: DUET's global layers on the backbone, trained on ``L_umn`` alone, with its best
    model in a folder of its own (RecBole names checkpoints by model and second, which two stages may share)."""
    return _with_settings(config, duet_inference="global", checkpoint_dir=os.path.join(config["checkpoint_dir"], "cloud"))


def cloud_state_file(state_file):
    """Where the cloud stage of a run with training-state file ``state_file`` keeps its own (None without one)."""
    if state_file is None:
        return None
    folder, name = os.path.split(state_file)
    return os.path.join(folder, "cloud-" + name)


def generator_stage_config(config, cloud_trainer):
    """The generator's training on the cloud model that ``cloud_trainer`` kept, loaded and held fixed.

    A ``backbone_checkpoint`` has already served as the cloud stage's start. In a distributed run rank 0 alone
    wrote the cloud model, so every rank names rank 0's file (and the model reads it through rank 0).
    """
    cloud_file = os.path.abspath(cloud_trainer.saved_model_file)
    if not config["single_spec"]:
        cloud_file = from_rank_zero(lambda: cloud_file, CheckpointError)
    return _with_settings(config, cloud_checkpoint=cloud_file, backbone_checkpoint=None, freeze_backbone=False)
