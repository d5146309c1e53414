r"""The cloud model: a RecBole next-item backbone (the *static layers*) with DUET's dynamic layers as ordinary global
layers.

Trained alone (``model: DUET`` with ``duet_inference: global``, the Universal Meta Network: the benchmarks' Layers
model) it is a recommender of its own. The two methods compared on it personalise those layers per device in
different ways: :class:`recbole_duet.model.duet.DUET` generates each device's update from its real-time window,
:class:`recbole_duet.model.finetune_model.Finetune` tunes a copy of them on the device's own window by SGD. Both
derive from the classes here, so they hold, load and score the same cloud model: the same parameters under the same
names, whose checkpoints either can start from (``cloud_checkpoint``).

:class:`CloudBase` is what every backbone shares; :class:`CloudModel` is the next-item version,
:class:`recbole_duet.model.cloud_din.CloudDIN` the DIN one.
"""

from recbole.model.abstract_recommender import SequentialRecommender

from recbole_duet.model.backbones import build_backbone, encode_sequence, item_scoring
from recbole_duet.model.layers import ResidualClassifier
from recbole_duet.model.warm_start import load_cloud_checkpoint


class CloudBase(SequentialRecommender):
    """The backbone, the size of a device's real-time window, and starting as a trained cloud model.

    Subclasses add the dynamic layers and name the cloud model's modules (:meth:`cloud_modules`).
    """

    # Whether the cloud model is the backbone alone, its global layers the backbone's own (DIN's MLP): then the
    # backbone trained on its own is a cloud model, its checkpoint one to start from and its training the Layers one.
    cloud_is_backbone = False

    def __init__(self, config, dataset):
        super(CloudBase, self).__init__(config, dataset)
        self.realtime_window_size = config["realtime_window"]
        self.backbone = build_backbone(config, dataset)

    def cloud_modules(self):
        """``{name: module}`` of the cloud model, named as in a checkpoint's state dict."""
        raise NotImplementedError

    @classmethod
    def starts_from_trained_model(cls, config):
        """Whether a model of ``config`` starts as a trained model (here: a trained cloud model, ``cloud_checkpoint``),
        which the runner loads once the model is built (:mod:`recbole_duet.training.starting_model`)."""
        return config["cloud_checkpoint"] is not None

    def load_starting_model(self, config):
        """Become the trained cloud model of ``cloud_checkpoint`` exactly, its backbone and global layers loaded and
        kept fixed. The runner calls this once the model is built (:func:`recbole_duet.quick_start.prepare_experiment`),
        so building a model reads no file.

        Raises:
            CheckpointError: naming the file, when it does not hold a cloud model this one can start from.
        """
        if config["cloud_checkpoint"] is not None:
            load_cloud_checkpoint(
                self.cloud_modules(), config["cloud_checkpoint"], config, accepts_backbone=self.cloud_is_backbone
            )


class CloudModel(CloudBase):
    r"""The cloud model on a RecBole next-item backbone (``backbone: SASRec | GRU4Rec | NARM | ...``).

    The dynamic layers sit between the backbone's user representation and the item table; scoring (the dot product,
    or e.g. CORE's cosine over a temperature) is the backbone's own. Here every device is scored with the global
    layers; subclasses personalise them through :meth:`forward`.
    """

    def __init__(self, config, dataset):
        super(CloudModel, self).__init__(config, dataset)
        self.loss_type = config["loss_type"]
        self.scoring = item_scoring(config["backbone"], self.backbone)
        self.classifier = ResidualClassifier(
            self.backbone.item_embedding.embedding_dim, config["duet_layers"], config["duet_activation"]
        )

    def cloud_modules(self):
        return {"backbone": self.backbone, "classifier": self.classifier}

    def device_inputs(self, interaction):
        """What a device uploads, in the argument order of the parameter methods (its history and its length)."""
        return interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]

    def forward(self, item_seq, item_seq_len):
        """User vectors ``[B, D]``, scored against the item table: the backbone's, through the global layers."""
        return self.classifier(encode_sequence(self.backbone, item_seq, item_seq_len))

    def predict(self, interaction):
        user_vector = self.forward(*self.device_inputs(interaction))
        return self.scoring.pointwise(user_vector, interaction[self.ITEM_ID])  # [B]

    def full_sort_predict(self, interaction):
        user_vector = self.forward(*self.device_inputs(interaction))
        return self.scoring.full_sort(user_vector)  # [B, n_items]
