"""The device half of a deployed DUET model: onnxruntime and numpy only, no torch, no RecBole.

A device keeps the bundle (static layers, global dynamic layers, shared low-rank bases, item vocabulary),
uploads its real-time window to the service, and scores its own history with the payload it gets back::

    payload = request_parameters("http://127.0.0.1:8000", ["242", "302", "377"], token="<token>")
    model = DeviceModel("duet-bundle")
    model.recommend(["242", "302", "377"], payload, k=10)   # [(item token, score), ...]

Importing this module must not import torch or RecBole (``recbole_duet/__init__.py`` imports its training
API lazily for that reason); a test checks ``sys.modules``.
"""

import json
import os
import urllib.error
import urllib.request

import numpy as np
import onnxruntime as ort

from recbole_duet.bundle import DEVICE_FILE, BundleError, ItemVocabulary, PayloadCodec, left_aligned, read_manifest


class ServiceError(BundleError):
    """The service answered with an error status (its one-line ``error`` is in the message)."""

    def __init__(self, status, message):
        super().__init__(f"the service answered {status}: {message}")
        self.status = status


def request_parameters(url, window, token=None, dtype="float32", timeout_s=10):
    """Ask the service at ``url`` for a device's parameters (``POST /v1/generate``), with the standard library.

    Args:
        window (list of str): the device's newest items, oldest first, as the dataset's tokens.
        token (str, optional): the service's bearer token, when it was started with ``--token-file``.

    Raises:
        ServiceError: any answer but 200 (401 for a wrong token, 422 naming a bad item, 503 when overloaded).
    """
    body = json.dumps({"window": list(window), "dtype": dtype}).encode()
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    request = urllib.request.Request(url.rstrip("/") + "/v1/generate", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        text = error.read().decode("utf-8", "replace")
        try:
            message = json.loads(text)["error"]
        except (ValueError, KeyError, TypeError):
            message = text.strip() or error.reason
        raise ServiceError(error.code, message) from None


class DeviceModel:
    """Score a device's history with the dynamic layers the service generated for it.

    Args:
        bundle (str): folder written by ``recbole-duet export``.
        threads (int): onnxruntime intra-op threads (one suits a phone-class device and a busy server).
    """

    def __init__(self, bundle, threads=1):
        self.manifest = read_manifest(bundle)
        self.vocabulary = ItemVocabulary.from_bundle(bundle)
        self.codec = PayloadCodec(self.manifest)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            os.path.join(bundle, DEVICE_FILE), options, providers=["CPUExecutionProvider"]
        )

    def scores(self, history, payload):
        """Scores ``[n_items]`` of every item (indexed by internal id; index 0 is padding) for this device.

        Args:
            history (list of str): the device's items, oldest first, as the dataset's tokens; the newest
                ``max_history`` (the model's ``MAX_ITEM_LIST_LENGTH``) are used.
            payload (dict): the service's answer for this device, as it came (decoded JSON).
        """
        if not history:
            raise BundleError("history: needs at least one item")
        item_seq, item_seq_len = left_aligned([self.vocabulary.ids(history, "history")], self.manifest["max_history"])
        inputs = {"item_seq": item_seq, "item_seq_len": item_seq_len, **self.codec.decode(payload)}
        if self.manifest["backbone"] == "DIN":
            inputs["items"] = np.arange(len(self.vocabulary), dtype=np.int64)[None, :]
        (scores,) = self.session.run(None, inputs)
        return scores[0]

    def recommend(self, history, payload, k=10):
        """The ``k`` best items for this device, best first, as ``[(item token, score), ...]``."""
        scores = self.scores(history, payload).astype(np.float64)
        scores[0] = -np.inf  # padding is never recommended
        best = np.argsort(-scores, kind="stable")[:k]
        return [(self.vocabulary.tokens[item], float(scores[item])) for item in best]
