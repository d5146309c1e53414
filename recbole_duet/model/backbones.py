"""The RecBole models DUET can take its static layers from.

DUET never re-implements a backbone: it instantiates RecBole's own class with the run's Config (whose
defaults already hold the backbone's yaml, see :mod:`recbole_duet.config`). From SASRec and GRU4Rec it
reads ``forward(item_seq, item_seq_len)`` for the user representation, ``item_embedding`` for the item
table and ``loss_fct`` for the CE/BPR loss; DIN is used through :mod:`recbole_duet.model.din_head`.
"""

from recbole.model.sequential_recommender import DIN, GRU4Rec, SASRec

BACKBONE_CLASSES = {"SASRec": SASRec, "GRU4Rec": GRU4Rec, "DIN": DIN}


def build_backbone(config, dataset):
    """Instantiate the RecBole model named by ``config['backbone']``."""
    return BACKBONE_CLASSES[config["backbone"]](config, dataset)
