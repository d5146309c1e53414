r"""DUET on DIN.

``model: DUET`` with ``backbone: DIN``. The cloud model is DIN (:class:`recbole_duet.model.cloud_din.CloudDIN`):
its prediction MLP, the dynamic layers, is trained globally as the UMN and personalised by the generator from the
device's real-time window (embedded with DIN's own item-feature embeddings).
"""

from recbole_duet.model.cloud_din import CloudDIN
from recbole_duet.model.din_head import item_feature_embedding
from recbole_duet.model.duet import DUETBase
from recbole_duet.model.layers import realtime_window


class DUETDIN(DUETBase, CloudDIN):
    r"""DUET whose dynamic layers are DIN's prediction MLP."""

    def __init__(self, config, dataset):
        super(DUETDIN, self).__init__(config, dataset)
        item_dim = self.backbone.att_list[0] // 4  # DIN's attention input is [q, k, q-k, q*k] of item features
        self._build_generator(config, item_dim, self.head.layer_shapes)

    def _window_vectors(self, user, item_seq, item_seq_len):
        """The real-time window embedded with DIN's item features ``[B, W, d]``, its lengths and ``has_window``."""
        end, has_window = self.window_end(item_seq_len)
        window, window_len = realtime_window(item_seq, end, self.realtime_window_size)
        window_emb = item_feature_embedding(self.backbone, user, window) * (window > 0).unsqueeze(-1)
        return window_emb, window_len, has_window

    def generate(self, user, item_seq, item_seq_len):
        """Each device's generated MLP layers, from its real-time window embedded with DIN's item features."""
        return self._generate(*self._window_vectors(user, item_seq, item_seq_len))

    def device_code(self, user, item_seq, item_seq_len):
        """Each device's code ``[B, h]``, the generator's summary of its window (see :meth:`DUET.device_code`)."""
        window_emb, window_len, _ = self._window_vectors(user, item_seq, item_seq_len)
        return self.generator.encode(window_emb, window_len)

    def _scores_globally(self):
        return self.inference == "global"

    def _personal_head(self, user, item_seq, item_seq_len):
        generated = self.generate(user, item_seq, item_seq_len)
        return lambda mlp_input: self.head(mlp_input, generated)

    def _logits(self, user, item_seq, item_seq_len, items):
        """``(generated_logit, global_logit)`` for one candidate item per row."""
        global_logit, mlp_input = self.tap(user, item_seq, item_seq_len, items)
        return self.head(mlp_input, self.generate(user, item_seq, item_seq_len)), global_logit

    def personalised_parameters(self, user, item_seq, item_seq_len):
        """The MLP weights a device receives: per layer ``([B, out, in], [B, out])``."""
        return self.head.personalised_parameters(self.generate(user, item_seq, item_seq_len))

    def calculate_loss(self, interaction):
        """Return ``(L_ppg, umn_weight * L_umn)`` (BCE on DIN's click labels); ``L_umn`` alone with
        ``duet_inference: global``, where the model is DIN itself and the generator is never run."""
        label = interaction[self.LABEL_FIELD]
        if self.inference == "global":
            global_logit, _ = self.tap(*self._inputs(interaction))
            return self.loss(global_logit, label)
        generated_logit, global_logit = self._logits(*self._inputs(interaction))
        return self.loss(generated_logit, label), self.umn_weight * self.loss(global_logit, label)
