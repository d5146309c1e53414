"""DUET's model classes: :class:`DUET` for the next-item backbones, :class:`DUETDIN` for DIN, and their parts.

``model: DUET`` is one model for the user; :func:`duet_class` picks the class from the backbone. The submodules
hold the generator and the Stable Weight Adapter (:mod:`recbole_duet.model.generator`), the dynamic layers
(:mod:`recbole_duet.model.layers`), the backbone rules (:mod:`recbole_duet.model.backbones`), the fine-tuning
baseline (:mod:`recbole_duet.model.finetune`) and every DUET key (:mod:`recbole_duet.model.settings`).
"""

from recbole_duet.model.duet import DUET, DUETBase
from recbole_duet.model.duet_din import DUETDIN

# ``model: DUET`` is one model for the user; its class depends on the backbone's task (next-item unless listed).
DUET_CLASSES = {"DIN": DUETDIN}


def duet_class(backbone):
    """The DUET class for ``backbone`` (an unknown backbone is reported by the config check)."""
    return DUET_CLASSES.get(backbone, DUET)


__all__ = ["DUET", "DUETBase", "DUETDIN", "duet_class"]
