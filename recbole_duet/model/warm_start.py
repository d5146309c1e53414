"""Start DUET's static layers from a backbone already trained on its own (``backbone_checkpoint``).

In the paper the static layers are the cloud model, trained before the generator learns to personalise it; a
RecBole user likewise has a trained SASRec or GRU4Rec (``run_recbole_duet.py --model=SASRec`` saves one under
``saved/``). Loaded into DUET's backbone and kept fixed (``freeze_backbone``), it leaves only the dynamic layers,
the generator and the adapter to learn, and the backbone's backward pass is skipped. With a checkpoint DUET's
dynamic layers start as the identity and its generated updates at zero (:class:`recbole_duet.model.duet.DUET`), so
training starts from exactly the backbone's scores.
"""

import json

from recbole_duet.checkpoint import load_checkpoint
from recbole_duet.errors import CheckpointError


def load_backbone_checkpoint(backbone, path, backbone_name, dataset_name):
    """Load ``path`` (a checkpoint of model ``backbone_name`` trained on ``dataset_name``) into ``backbone``.

    Raises:
        CheckpointError: naming the file, when it holds another model or dataset, or parameters of other shapes
            (another ``MAX_ITEM_LIST_LENGTH``, hidden size or item count).
    """
    checkpoint = load_checkpoint(path, map_location="cpu")
    trained = json.loads(checkpoint["config"])
    where = f"Checkpoint file '{path}' (backbone_checkpoint)"
    if str(trained.get("model", "")).lower() != backbone_name.lower():
        raise CheckpointError(f"{where} holds a {trained.get('model')!r} model, not the backbone {backbone_name!r}.")
    if trained.get("dataset") != dataset_name:
        raise CheckpointError(f"{where} was trained on dataset {trained.get('dataset')!r}, not {dataset_name!r}.")
    try:
        backbone.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as error:
        first_problem = str(error).split("\n\t")[1] if "\n\t" in str(error) else str(error)
        raise CheckpointError(f"{where} does not fit this backbone: {first_problem}") from error
