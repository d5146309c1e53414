"""From a trained DUET checkpoint to a deployment bundle (``recbole-duet export``).

Needs torch and RecBole (it rebuilds the model and its dataset) plus onnx and onnxruntime
(``pip install "recbole-duet[serve]"``). Nothing in :mod:`recbole_duet.model` imports this package.
"""
