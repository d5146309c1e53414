"""The RecBole models DUET can take its static layers from.

DUET never re-implements a backbone: it instantiates RecBole's own class with the run's Config (whose
defaults already hold the backbone's yaml, see :mod:`recbole_duet.config`) and reads three things from it:
``forward(item_seq, item_seq_len)`` for the user representation, ``item_embedding`` for the item table
that representations are scored against, and ``loss_fct`` for the CE/BPR loss it was configured with.
"""

from recbole.model.sequential_recommender import GRU4Rec, SASRec

BACKBONE_CLASSES = {"SASRec": SASRec, "GRU4Rec": GRU4Rec}


def build_backbone(config, dataset):
    """Instantiate the RecBole model named by ``config['backbone']``."""
    return BACKBONE_CLASSES[config["backbone"]](config, dataset)
