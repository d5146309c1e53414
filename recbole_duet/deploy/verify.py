"""Check an exported bundle against the PyTorch model it came from, on the dataset's test users.

Every user goes the deployed way: its window through the generator graph, the payload encoded and decoded
as a device receives it, its history through the device graph; the scores are compared with the model's
own ``full_sort_predict``.

Top-10 lists are compared twice: ``top10_identical`` (the same items in the same order) and
``top10_identical_up_to_ties``, which also accepts a list that differs only in the order of items whose
PyTorch scores are within ``MAX_ABS_SCORE_DIFF`` of each other. Two items with equal float32 scores (it
happens: one ml-100k user of 943 has two at 2.6021314) are ordered by rounding noise, in PyTorch as in
onnxruntime; the export is refused when the second fraction or the score difference misses its target.
"""

import numpy as np
import torch

from recbole_duet.bundle import BundleError
from recbole_duet.device import DeviceModel
from recbole_duet.serving.generator import BundleGenerator

MAX_ABS_SCORE_DIFF = 1e-4
MIN_TOP10_AGREEMENT = 0.999


def top_k(scores, k=10):
    """Indices of the ``k`` best items of each row, best first, padding (item 0) excluded."""
    scores = np.array(scores, dtype=np.float64)
    scores[..., 0] = -np.inf
    return np.argsort(-scores, axis=-1, kind="stable")[..., :k]


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
    exported_top, reference_top = top_k(exported), top_k(reference)
    ranked_scores = [np.take_along_axis(reference, top, axis=1) for top in (exported_top, reference_top)]
    report = {
        "users": len(histories),
        "max_abs_score_diff": float(np.abs(exported - reference).max()),
        "top10_identical": float(np.mean(np.all(exported_top == reference_top, axis=1))),
        "top10_identical_up_to_ties": float(
            np.mean(np.all(np.abs(ranked_scores[0] - ranked_scores[1]) <= MAX_ABS_SCORE_DIFF, axis=1))
        ),
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
