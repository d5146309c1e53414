"""The bundle's generator graph under onnxruntime: item-id windows in, one payload per device out."""

import os

import onnxruntime as ort

from recbole_duet.device.bundle import GENERATOR_FILE, ItemVocabulary, PayloadCodec, left_aligned, read_manifest


class BundleGenerator:
    """Generate the payloads of a batch of devices in one onnxruntime call.

    Args:
        bundle (str): folder written by ``recbole-duet export``.
        threads (int): onnxruntime intra-op threads; one per replica, scale with replicas (docs/deployment.md).
    """

    def __init__(self, bundle, threads=1):
        self.manifest = read_manifest(bundle)
        self.vocabulary = ItemVocabulary.from_bundle(bundle)
        self.codec = PayloadCodec(self.manifest)
        self.window_size = self.manifest["window_size"]
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            os.path.join(bundle, GENERATOR_FILE), options, providers=["CPUExecutionProvider"]
        )

    def parameters(self, windows):
        """The generated tensors ``[B, *shape]`` in layout order; each window is a non-empty list of internal
        item ids (only the newest ``window_size`` are read)."""
        window, window_len = left_aligned(windows, self.window_size)
        return self.session.run(None, {"window": window, "window_len": window_len})

    def generate(self, windows, dtype="float32"):
        """One payload (a JSON-ready dict) per window."""
        return self.codec.encode(self.parameters(windows), dtype)
