"""From a trained DUET checkpoint to a deployment bundle, and the deployment commands.

* :mod:`recbole_duet.deploy.cli`: ``recbole-duet export`` and ``recbole-duet serve``; it imports what each
  command needs when it runs, so ``serve`` starts without torch;
* :mod:`recbole_duet.deploy.export`, :mod:`recbole_duet.deploy.graphs`, :mod:`recbole_duet.deploy.verify`: the
  exporter, which needs torch and RecBole (it rebuilds the model and its dataset) plus onnx and onnxruntime
  (``pip install "recbole-duet[serve]"``).

This package imports nothing on its own. Nothing in :mod:`recbole_duet.model` imports it.
"""
