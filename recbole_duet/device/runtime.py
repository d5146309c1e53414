"""The device runtime of a deployed DUET model: onnxruntime and numpy only, no torch, no RecBole.

A device keeps the bundle (static layers, global dynamic layers, shared low-rank bases, item vocabulary),
uploads its real-time window to the service, and scores its own history with the payload it gets back::

    payload = request_parameters("http://127.0.0.1:8000", ["242", "302", "377"], token="<token>")
    model = DeviceModel("duet-bundle")
    model.recommend(["242", "302", "377"], payload, k=10)   # [(item token, score), ...]

Importing this module must not import torch or RecBole (``recbole_duet/__init__.py`` imports its training
API lazily for that reason); a test checks ``sys.modules``. :mod:`recbole_duet.device` re-exports
:class:`DeviceModel`, :func:`request_parameters` and :class:`ServiceError`.
"""

import json
import os
import urllib.error
import urllib.request

import numpy as np
import onnxruntime as ort

from recbole_duet.device.bundle import (
    CODE_FILE,
    DEVICE_FILE,
    BundleError,
    ItemVocabulary,
    PayloadCodec,
    left_aligned,
    read_manifest,
)


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
        self.bundle = bundle
        self.manifest = read_manifest(bundle)
        self.vocabulary = ItemVocabulary.from_bundle(bundle)
        self.codec = PayloadCodec(self.manifest)
        self.options = ort.SessionOptions()
        self.options.intra_op_num_threads = threads
        self.options.inter_op_num_threads = 1
        self.session = self._session(DEVICE_FILE)
        self._code_session = None  # opened at the first device_code call: only the drift policy needs it

    def _session(self, file_name):
        return ort.InferenceSession(
            os.path.join(self.bundle, file_name), self.options, providers=["CPUExecutionProvider"]
        )

    def _history_inputs(self, history):
        if not history:
            raise BundleError("history: needs at least one item")
        item_seq, item_seq_len = left_aligned([self.vocabulary.ids(history, "history")], self.manifest["max_history"])
        return {"item_seq": item_seq, "item_seq_len": item_seq_len}

    def device_code(self, history):
        """The device's code ``[h]``: the generator's summary of its real-time window, as the service would compute
        it from this history. The ``drift`` request policy compares it with the code of the last request.

        Raises:
            BundleError: the bundle has no ``code.onnx`` (exported before request policies: export it again).
        """
        if self._code_session is None:
            if not os.path.isfile(os.path.join(self.bundle, CODE_FILE)):
                raise BundleError(f"'{self.bundle}' has no {CODE_FILE}: export the bundle again for the drift policy")
            self._code_session = self._session(CODE_FILE)
        (code,) = self._code_session.run(None, self._history_inputs(history))
        return code[0]

    def global_payload(self):
        """A payload with a zero update: the cloud model's global layers, what a device that never asked scores
        with."""
        zeros = [np.zeros((1, *shape), dtype=np.float32) for _, shape in self.codec.layout]
        return self.codec.encode(zeros)[0]

    def scores(self, history, payload):
        """Scores ``[n_items]`` of every item (indexed by internal id; index 0 is padding) for this device.

        Args:
            history (list of str): the device's items, oldest first, as the dataset's tokens; the newest
                ``max_history`` (the model's ``MAX_ITEM_LIST_LENGTH``) are used.
            payload (dict): the service's answer for this device, as it came (decoded JSON).
        """
        inputs = {**self._history_inputs(history), **self.codec.decode(payload)}
        if self.manifest["backbone"] == "DIN":
            inputs["items"] = np.arange(len(self.vocabulary), dtype=np.int64)[None, :]
        (scores,) = self.session.run(None, inputs)
        return scores[0]

    def recommend(self, history, payload, k=10):
        """The ``k`` best items for this device, best first, as ``[(item token, score), ...]``."""
        scores = self.scores(history, payload).astype(np.float64)
        best = np.argsort(-scores[1:], kind="stable")[:k] + 1  # item 0 is padding: never recommended, whatever k
        return [(self.vocabulary.tokens[item], float(scores[item])) for item in best]
