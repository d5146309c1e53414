from recbole_duet.model.duet import DUET, DUETBase
from recbole_duet.model.duet_din import DUETDIN

# ``model: DUET`` is one model for the user; its class depends on the backbone's task (next-item unless listed).
DUET_CLASSES = {"DIN": DUETDIN}


def duet_class(backbone):
    """The DUET class for ``backbone`` (an unknown backbone is reported by the config check)."""
    return DUET_CLASSES.get(backbone, DUET)


__all__ = ["DUET", "DUETBase", "DUETDIN", "duet_class"]
