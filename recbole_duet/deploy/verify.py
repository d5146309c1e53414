"""Check an exported bundle against the PyTorch model it came from, on the dataset's test users.

Every user goes the deployed way: its window through the generator graph, the payload encoded and decoded
as a device receives it, its history through the device graph; the scores are compared with the model's
own ``full_sort_predict``.

Top-10 lists are compared rank by rank on PyTorch's scores: the exported list matches at a rank when its item
there has the PyTorch score of PyTorch's own item at that rank. ``top10_identical`` asks for exactly the same
float32 score, so the only difference it forgives is the order of items PyTorch scores exactly alike (and
which of them makes the cut), an order PyTorch itself leaves arbitrary (``torch.topk`` does not order ties):
one ml-100k user of 943 has two items at exactly 2.6021314 that onnxruntime scores one bit apart.
``top10_identical_up_to_ties`` also forgives items within ``MAX_ABS_SCORE_DIFF`` of each other, which rounding
noise can swap; the export is refused when that fraction or the score difference misses its target. Both
rankings, like the device runtime's, put equal scores in item-id order.
"""

import numpy as np
import torch

from recbole_duet.device import DeviceModel
from recbole_duet.device.bundle import BundleError
from recbole_duet.serving.bundle_generator import BundleGenerator

MAX_ABS_SCORE_DIFF = 1e-4
MIN_TOP10_AGREEMENT = 0.999


def top_k(scores, k=10):
    """Indices of the ``k`` best items of each row, best first, equal scores in item-id order, padding (item 0)
    excluded."""
    scores = np.array(scores, dtype=np.float64)[..., 1:]
    return np.argsort(-scores, axis=-1, kind="stable")[..., :k] + 1


def top10_agreement(exported, reference, tolerance):
    """Fraction of rows (users) whose exported top-10 matches the reference top-10 at every rank, items whose
    ``reference`` scores differ by at most ``tolerance`` counting as the same (0: only exact ties)."""
    ranked = [np.take_along_axis(reference, top_k(scores), axis=-1) for scores in (exported, reference)]
    return float(np.mean(np.all(np.abs(ranked[0] - ranked[1]) <= tolerance, axis=-1)))


def verify_bundle(folder, model, test_loader, max_users):
    """Return ``{users, max_abs_score_diff, top10_identical, top10_identical_up_to_ties}``; raise
    :class:`BundleError` below the targets."""
    rows = test_loader._dataset.inter_feat[:max_users]
    with torch.no_grad():
        reference = model.full_sort_predict(rows).numpy()
    histories = [seq[:length].tolist() for seq, length in zip(rows[model.ITEM_SEQ], rows[model.ITEM_SEQ_LEN])]
    generator, device = BundleGenerator(folder), DeviceModel(folder)
    payloads = generator.generate([history[-generator.window_size :] for history in histories])
    tokens = device.vocabulary.tokens
    exported = np.stack(
        [device.scores([tokens[item] for item in history], payload) for history, payload in zip(histories, payloads)]
    )
    report = {
        "users": len(histories),
        "max_abs_score_diff": float(np.abs(exported - reference).max()),
        "top10_identical": top10_agreement(exported, reference, 0),
        "top10_identical_up_to_ties": top10_agreement(exported, reference, MAX_ABS_SCORE_DIFF),
    }
    if (
        report["max_abs_score_diff"] > MAX_ABS_SCORE_DIFF
        or report["top10_identical_up_to_ties"] < MIN_TOP10_AGREEMENT
    ):
        raise BundleError(
            f"the exported bundle in '{folder}' does not reproduce the PyTorch model: {report} "
            f"(needs max_abs_score_diff <= {MAX_ABS_SCORE_DIFF}, top10_identical_up_to_ties >= {MIN_TOP10_AGREEMENT})"
        )
    return report
