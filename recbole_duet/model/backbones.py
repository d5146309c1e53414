"""The RecBole models DUET can take its static layers from.

DUET never re-implements a backbone: it instantiates RecBole's own class with the run's Config (whose
defaults already hold the backbone's yaml, see :mod:`recbole_duet.config`). From SASRec and GRU4Rec it
reads ``forward(item_seq, item_seq_len)`` for the user representation, ``item_embedding`` for the item
table and ``loss_fct`` for the CE/BPR loss (and, with ``generator_input: backbone``, the per-position states
through :class:`SequenceStatesTap`); DIN is used through :mod:`recbole_duet.model.din_head`.
"""

from recbole.model.sequential_recommender import DIN, GRU4Rec, SASRec

BACKBONE_CLASSES = {"SASRec": SASRec, "GRU4Rec": GRU4Rec, "DIN": DIN}


def build_backbone(config, dataset):
    """Instantiate the RecBole model named by ``config['backbone']``."""
    return BACKBONE_CLASSES[config["backbone"]](config, dataset)


class SequenceStatesTap:
    """Keeps the per-position hidden states ``[B, L, H]`` a RecBole next-item model reads its user vector from.

    RecBole's next-item models end ``forward`` with ``self.gather_indexes(states, item_seq_len - 1)``; wrapping
    that call on the backbone instance hands DUET every position's state from the same forward pass, without
    changing the model's code or running it twice.
    """

    def __init__(self, backbone):
        self.states = None
        gather_indexes = backbone.gather_indexes

        def gather_and_keep(states, gather_index):
            self.states = states
            return gather_indexes(states, gather_index)

        backbone.gather_indexes = gather_and_keep

    def pop(self):
        """The states of the latest forward pass (released, so no stale batch is kept alive)."""
        states, self.states = self.states, None
        return states
