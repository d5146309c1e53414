"""Faster kernels for RecBole's layers that compute the same functions, installed with the compatibility shims.

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
"""

import types

import torch.nn.functional as F
from recbole.model.layers import FeedForward

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


def use_recbole_activations(model):
    """Give every ``FeedForward`` inside a built ``model`` RecBole's element-wise GELU and Swish back."""
    for module in model.modules():
        if not isinstance(module, FeedForward):
            continue
        for name, function in FUSED_ACTIVATIONS.items():
            if getattr(module.intermediate_act_fn, "__func__", None) is function:
                module.intermediate_act_fn = types.MethodType(RECBOLE_ACTIVATIONS[name], module)
    return model
