r"""DUET with its generated layers on the item side of the dot product (``dynamic_side: item``).

On a next-item backbone DUET's generated layers map the user vector to another user vector (:class:`DUET`), so a
device's personalised model still scores every item by one dot product with a vector computed from its history: a
larger encoder could have produced the same scores (docs/model.md, *What a generated update can add*). Here the
user vector is the cloud model's (backbone and global layers) and each device's generated layers transform the
embedding of every candidate it scores instead, ``e <- e + act(W e + b)`` with the device's ``W`` and ``b``:

    score(u, i) = user(u) . g_u(e_i)

The activation makes ``g_u`` non-linear, so a device can score two items its user vector cannot tell apart
differently (e.g. items near any of two interests its window holds), as DIN's generated MLP reads the candidate.

The item-side layers have no global part (zero, not trained): with no update every item scores as in the cloud
model, so DUET at its start, or with ``duet_inference: global``, is exactly its Layers model, and whatever it gains
on top is the generated update's. A device's layers transform each candidate it scores, so this side serves
pairwise losses (``loss_type: BPR``) and sampled evaluation (``eval_args: {mode: uni100}``) only; full ranking
would transform the whole catalogue for every device.
"""

from recbole_duet.errors import ConfigError
from recbole_duet.model.device_rows import DeviceRows
from recbole_duet.model.duet import DUET
from recbole_duet.model.layers import ResidualClassifier


FULL_RANKING = "'user' under full ranking (the item side scores sampled candidates: eval_args mode uni100, ...)"


def _evaluation_modes(eval_args):
    """The evaluation modes of RecBole's ``eval_args`` (one for all phases, or one per phase)."""
    mode = eval_args["mode"]
    return set(mode.values()) if isinstance(mode, dict) else {mode}


def check_item_side(config):
    """Refuse, naming the key, a training or an evaluation that would score every item with every device's layers."""
    if config["loss_type"] != "BPR":
        expected = "'user' with loss_type CE (the item side trains pairwise: loss_type BPR on sampled negatives)"
        raise ConfigError("dynamic_side", "item", expected)
    if "full" in _evaluation_modes(config["eval_args"]):
        raise ConfigError("dynamic_side", "item", FULL_RANKING)


class ItemSideDUET(DUET):
    r"""DUET whose generated layers transform each scored item's embedding (``dynamic_side: item``).

    The generator, the adapter and the cloud model (backbone and global layers on the user side) are DUET's; only
    where the generated layers act differs.
    """

    def __init__(self, config, dataset):
        super(ItemSideDUET, self).__init__(config, dataset)
        check_item_side(config)
        self.item_layers = ResidualClassifier(
            self.backbone.item_embedding.embedding_dim, config["duet_layers"], config["duet_activation"]
        )
        self.item_layers.start_as_identity()
        self.item_layers.requires_grad_(False)

    def _cloud_user_and_generated(self, item_seq, item_seq_len, fixed_cloud=False):
        """The cloud model's user vectors ``[B, D]`` (before scoring) and each device's item-side layers.

        ``fixed_cloud``: the window's vectors enter the generator detached (the backbone learns nothing from them).
        """
        representation, states = self.represent(item_seq, item_seq_len)
        user_vector = self.classifier(representation)
        generated = self.generate(item_seq, item_seq_len, states, fixed_inputs=fixed_cloud)
        return user_vector, generated

    def _item_scores(self, user_vector, generated, items, fixed_cloud=False):
        """``[B, ...]``: each device's items ``[B, ...]``, their embeddings through its layers, scored against its
        user vector.

        ``fixed_cloud``: the user vectors and item embeddings detached, so the score trains the generator only.
        """
        embeddings = self.backbone.item_embedding(items)
        if fixed_cloud:
            user_vector, embeddings = user_vector.detach(), embeddings.detach()
        item_vectors = self.scoring.item(self.item_layers(embeddings, generated))
        user_vector = self.scoring.user(user_vector)
        return (user_vector.view(*user_vector.shape[:1], *[1] * (items.dim() - 1), -1) * item_vectors).sum(dim=-1)

    def predict(self, interaction):
        """Each row's score. Under sampled evaluation a device's history repeats on every candidate row: its user
        vector and layers are computed once per distinct device (:class:`DeviceRows`), which scores its rows'
        items together."""
        if self.inference == "global":
            return super().predict(interaction)
        rows = DeviceRows(*self.device_inputs(interaction))
        user_vector, generated = self._cloud_user_and_generated(*rows.devices)
        return rows.ungroup(self._item_scores(user_vector, generated, rows.group(interaction[self.ITEM_ID])))

    def full_sort_predict(self, interaction):
        if self.inference == "global":
            return super().full_sort_predict(interaction)
        raise ConfigError("dynamic_side", "item", FULL_RANKING)

    def calculate_loss(self, interaction):
        """``(L_ppg, umn_weight * L_umn)`` as :meth:`DUET.calculate_loss`; ``L_ppg`` is BPR on the item-side scores."""
        if self.inference == "global":
            return super().calculate_loss(interaction)
        fixed_cloud = self.cloud_is_fixed or self.ppg_scope == "generator"
        user_vector, generated = self._cloud_user_and_generated(*self.device_inputs(interaction), fixed_cloud)
        pos_score, neg_score = (
            self._item_scores(user_vector, generated, interaction[field], fixed_cloud)
            for field in (self.POS_ITEM_ID, self.NEG_ITEM_ID)
        )
        loss_ppg = self.backbone.loss_fct(pos_score, neg_score)
        if self.umn_weight == 0 or self.cloud_is_fixed:
            return loss_ppg, loss_ppg.new_zeros(())
        return loss_ppg, self.umn_weight * self._recommendation_loss(user_vector, interaction)

    def personalised_parameters(self, item_seq, item_seq_len):
        """The item-side layers' weights a device receives: per layer ``([B, D, D], [B, D])``."""
        return self.item_layers.personalised_parameters(self.generate(item_seq, item_seq_len))


__all__ = ["ItemSideDUET", "check_item_side"]
