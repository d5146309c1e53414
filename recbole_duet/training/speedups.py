"""Faster ways to run RecBole's layers that compute the same functions, installed with the compatibility shims.

Fused activations
-----------------

RecBole's ``FeedForward`` (the Transformer block of SASRec, BERT4Rec, S3Rec, FDSA, CORE, ...) writes GELU as
``x * 0.5 * (1 + erf(x / sqrt(2)))`` and Swish as ``x * sigmoid(x)`` out of elementary tensor operations. Over
the ``[batch, length, inner]`` activations that is five passes forward for GELU, with four intermediates kept
for a backward pass of as many more. torch's fused ``F.gelu`` (the exact, erf form) and ``F.silu`` compute the
same functions in one pass each way: on the 2-core CPU a SASRec training step (ml-100k, 2,048 histories of 20)
takes about 0.6 times as long (``benchmarks/epoch_time.py``, docs/study-log.md). Outputs agree to float
rounding (~1e-6).

``FeedForward`` binds its activation when it is built (``get_hidden_act``), so the fused versions reach every
model built after :func:`install_fused_activations`; :func:`use_recbole_activations` puts RecBole's own back
on one built model, for measuring the difference.

Target attention by history length, in chunks
---------------------------------------------
RecBole's ``SequenceAttLayer`` (DIN's and DIEN's attention over the history, per candidate item) builds the
``[rows, history, 4 * width]`` input of its MLP for the whole batch at once and masks the padded positions
afterwards. Under sampled evaluation (``uni100``) a batch holds ``eval_batch_size`` rows, 101 per test case, so
that tensor runs to hundreds of MB, and on short-history data (Amazon's 5-core sets, where most histories are
far shorter than ``MAX_ITEM_LIST_LENGTH``) most of its MLP's work goes to positions the mask then discards.
When no gradient is kept, the installed forward groups the rows by history length and runs the same RecBole
forward on each group's real positions only, in chunks of rows whose MLP input stays near
:data:`ATTENTION_CHUNK_ELEMENTS` values, which stay in the CPU's caches (``benchmarks/din_attention_chunks.py``
measures it). Each row's attention reads that row alone (the MLP has no batch norm) and a padded position only
ever adds a zero, so the scores are the same to float rounding. Training keeps RecBole's single pass, hence its
gradients, and so does tracing for ONNX export, whose graph must serve any history length.
:func:`use_recbole_attention` puts RecBole's forward back.
"""

import types

import torch
import torch.nn.functional as F
from recbole.model.layers import FeedForward, SequenceAttLayer

RECBOLE_ACTIVATIONS = {"gelu": FeedForward.gelu, "swish": FeedForward.swish}


def _fused_gelu(self, x):
    return F.gelu(x)


def _fused_swish(self, x):
    return F.silu(x)


FUSED_ACTIVATIONS = {"gelu": _fused_gelu, "swish": _fused_swish}


def install_fused_activations():
    """Make ``FeedForward``'s GELU and Swish the fused kernels for every model built from now on (idempotent)."""
    for name, function in FUSED_ACTIVATIONS.items():
        setattr(FeedForward, name, function)


RECBOLE_ATTENTION_FORWARD = SequenceAttLayer.forward
ATTENTION_CHUNK_ELEMENTS = 1 << 20  # the attention MLP's input per chunk: 4 MB of float32


def attention_chunk_rows(history_length, query_width):
    """Rows per chunk: as many as keep the MLP input (``history_length x 4 query_width`` per row) near
    :data:`ATTENTION_CHUNK_ELEMENTS` values, and at least one."""
    return max(1, ATTENTION_CHUNK_ELEMENTS // (history_length * 4 * query_width))


def _attention_by_history_length(self, queries, keys, keys_length):
    if torch.is_grad_enabled() or torch.jit.is_tracing():  # an exported graph must not fix one batch's lengths
        return RECBOLE_ATTENTION_FORWARD(self, queries, keys, keys_length)
    history = keys.shape[1]
    output = keys.new_zeros(len(queries), 1, history if self.return_seq_weight else keys.shape[-1])
    full_mask = self.mask_mat
    try:
        for length in keys_length.unique().tolist():
            width = min(max(length, 1), history)  # an empty history keeps one (masked) position, as RecBole has
            self.mask_mat = full_mask[..., :width]
            rows = (keys_length == length).nonzero().squeeze(1)
            for chunk in rows.split(attention_chunk_rows(width, queries.shape[-1])):
                weighted = RECBOLE_ATTENTION_FORWARD(self, queries[chunk], keys[chunk, :width], keys_length[chunk])
                output[chunk, :, : weighted.shape[-1]] = weighted
    finally:
        self.mask_mat = full_mask
    return output


def install_attention_by_history_length():
    """Run ``SequenceAttLayer`` on each history length's real positions, in row chunks, whenever no gradient is
    kept, in every model (idempotent)."""
    SequenceAttLayer.forward = _attention_by_history_length


def use_recbole_attention():
    """Give ``SequenceAttLayer`` RecBole's own forward back (every model), for measuring the difference."""
    SequenceAttLayer.forward = RECBOLE_ATTENTION_FORWARD


def use_recbole_activations(model):
    """Give every ``FeedForward`` inside a built ``model`` RecBole's element-wise GELU and Swish back."""
    for module in model.modules():
        if not isinstance(module, FeedForward):
            continue
        for name, function in FUSED_ACTIVATIONS.items():
            if getattr(module.intermediate_act_fn, "__func__", None) is function:
                module.intermediate_act_fn = types.MethodType(RECBOLE_ACTIVATIONS[name], module)
    return model
