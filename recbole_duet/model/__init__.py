"""The plugin's model classes and their parts.

Two models on one cloud model (:mod:`recbole_duet.model.cloud`: a RecBole backbone with dynamic layers): ``model:
DUET``, which generates each device's dynamic layers (:class:`DUET` for the next-item backbones, :class:`DUETDIN`
for DIN), and ``model: Finetune``, the on-device fine-tuning baseline DUET replaces (:class:`Finetune`,
:class:`FinetuneDIN`). Each is one model for the user; :func:`plugin_class` picks the class from the backbone. The
submodules hold the generator and the Stable Weight Adapter (:mod:`recbole_duet.model.generator`), the dynamic
layers (:mod:`recbole_duet.model.layers`), the backbone rules (:mod:`recbole_duet.model.backbones`), the fine-tuning
computations (:mod:`recbole_duet.model.finetune`) and every key of both models (:mod:`recbole_duet.model.settings`).
"""

from recbole_duet.model.backbones import is_pairwise
from recbole_duet.model.cloud import CloudBase
from recbole_duet.model.duet import DUET, DUETBase
from recbole_duet.model.duet_din import DUETDIN
from recbole_duet.model.finetune_din import FinetuneDIN
from recbole_duet.model.finetune_model import Finetune

# The plugin's model names, each with its class for the next-item backbones and for DIN (the backbone's task).
PLUGIN_MODELS = {"DUET": (DUET, DUETDIN), "Finetune": (Finetune, FinetuneDIN)}


def plugin_class(name, backbone):
    """The class of the plugin model ``name`` on ``backbone`` (an unknown backbone is reported by the config check)."""
    next_item, din = PLUGIN_MODELS[name]
    return din if is_pairwise(backbone) else next_item


def model_name(model):
    """The plugin model ``model`` is (a name, or one of its classes: ``DUETDIN`` -> ``'DUET'``), None for any other."""
    return next((name for name, classes in PLUGIN_MODELS.items() if model == name or model in classes), None)


__all__ = ["CloudBase", "DUET", "DUETBase", "DUETDIN", "Finetune", "FinetuneDIN", "PLUGIN_MODELS", "model_name", "plugin_class"]
