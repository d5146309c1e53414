"""Request policies on the device: when each policy asks, the one-line errors for a bad policy, and the device-side
inputs (the device code, the global payload) against the PyTorch model they come from."""

import math

import numpy as np
import pytest
import torch
from bundles import exported_bundle

from recbole_duet.device import DeviceModel
from recbole_duet.device.bundle import BundleError
from recbole_duet.device.request_policy import (
    Always,
    Drift,
    EveryK,
    Never,
    RequestState,
    cosine_distance,
    parse_policy,
    replay,
    source_of_parameters,
)


def test_always_never_and_every_k_ask_when_they_say():
    assert replay(Always(), n=4).tolist() == [True] * 4
    assert replay(Never(), n=4).tolist() == [False] * 4
    assert replay(EveryK(1), n=3).tolist() == [True] * 3
    assert replay(EveryK(3), n=7).tolist() == [True, False, False, True, False, False, True]
    assert replay(EveryK(3), n=0).tolist() == []


def test_the_parameters_a_device_holds_come_from_its_last_request():
    requests = np.array([True, False, False, True, False])
    assert source_of_parameters(requests).tolist() == [0, 0, 0, 3, 3]
    assert source_of_parameters(np.array([False, True, False])).tolist() == [-1, 1, 1]  # -1: the global layers


def test_each_case_holds_the_parameters_of_its_devices_last_request():
    from benchmarks.request_policies import parameter_sources

    devices, codes = [slice(0, 3), slice(3, 7)], np.zeros((7, 2))
    assert parameter_sources(EveryK(2), devices, codes).tolist() == [0, 0, 2, 3, 3, 5, 5]  # each device starts anew
    assert parameter_sources(Always(), devices, codes).tolist() == list(range(7))
    assert parameter_sources(Never(), devices, codes).tolist() == [-1] * 7


def test_drift_asks_when_the_code_moved_past_the_threshold_since_the_last_request():
    angle = math.radians(30)  # cosine distance 1 - cos(30 deg) = 0.134 from the first code
    codes = np.array([[1.0, 0.0], [2.0, 0.0], [math.cos(angle), math.sin(angle)], [0.0, 1.0], [0.0, 3.0]])
    assert cosine_distance(codes[0], codes[2]) == pytest.approx(1 - math.cos(angle))
    assert cosine_distance(codes[0], codes[3]) == pytest.approx(1.0)
    assert replay(Drift(0.2), codes).tolist() == [True, False, False, True, False]
    assert replay(Drift(0.1), codes).tolist() == [True, False, True, True, False]
    # measured against the last request's code, not the previous interaction's: small steps add up
    creeping = np.array([[math.cos(math.radians(a)), math.sin(math.radians(a))] for a in (0, 20, 40, 60)])
    assert replay(Drift(0.1), creeping).tolist() == [True, False, True, False]
    assert replay(Drift(0.0), np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.1]])).tolist() == [True, False, True]


def test_a_zero_code_never_counts_as_movement():
    assert cosine_distance([0.0, 0.0], [1.0, 0.0]) == 0.0


def test_drift_needs_the_code_at_every_interaction():
    with pytest.raises(ValueError, match="drift:0.1: needs the device's code"):
        RequestState(Drift(0.1)).decide()


@pytest.mark.parametrize(
    "text, expected",
    [("always", Always()), ("never", Never()), ("every_k:5", EveryK(5)), ("drift:0.05", Drift(0.05))],
)
def test_policies_parse_from_their_names(text, expected):
    policy = parse_policy(text)
    assert policy == expected and str(policy) == text


@pytest.mark.parametrize(
    "text, message",
    [
        ("sometimes", "request policy 'sometimes': unknown"),
        ("always:3", "'always' takes no setting"),
        ("every_k:x", "'every_k' needs a number"),
        ("every_k:0", "every_k: k must be an integer >= 1, got 0"),
        ("every_k:1.5", "'every_k' needs a number"),
        ("drift:3", "drift: threshold must be a cosine distance in [0, 2], got 3.0"),
        ("drift:-0.1", "drift: threshold must be a cosine distance in [0, 2]"),
    ],
)
def test_a_bad_policy_is_refused_in_one_line(text, message):
    with pytest.raises(ValueError) as error:
        parse_policy(text)
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.fixture(scope="module", params=["SASRec", "GRU4Rec", "DIN"])
def bundle(request, tmp_path_factory):
    return exported_bundle(str(tmp_path_factory.mktemp(request.param)), request.param, verify_users=0)


def device_histories(model, loaders, n=6):
    rows = loaders[2]._dataset.inter_feat[:n]
    items = [seq[:length].tolist() for seq, length in zip(rows[model.ITEM_SEQ], rows[model.ITEM_SEQ_LEN])]
    return rows, items


def test_the_device_code_is_the_models_own(bundle):
    folder, _, model, loaders = bundle
    rows, histories = device_histories(model, loaders)
    device = DeviceModel(folder)
    tokens = device.vocabulary.tokens
    with torch.no_grad():
        reference = model.device_code(*model.device_inputs(rows)).numpy()
    exported = np.stack([device.device_code([tokens[item] for item in history]) for history in histories])
    assert exported.shape == reference.shape and reference.std() > 0
    np.testing.assert_allclose(exported, reference, atol=1e-5)
    # the drift policy decides the same on either side
    for threshold in (0.01, 0.1):
        assert replay(Drift(threshold), exported).tolist() == replay(Drift(threshold), reference).tolist()


def test_the_global_payload_scores_with_the_global_layers(bundle):
    folder, _, model, loaders = bundle
    rows, histories = device_histories(model, loaders)
    device = DeviceModel(folder)
    tokens = device.vocabulary.tokens
    model.inference = "global"
    try:
        with torch.no_grad():
            reference = model.full_sort_predict(rows).numpy()
    finally:
        model.inference = "generated"
    payload = device.global_payload()
    exported = np.stack([device.scores([tokens[item] for item in history], payload) for history in histories])
    np.testing.assert_allclose(exported, reference, atol=1e-4)


def test_a_bundle_without_the_code_graph_names_the_file(bundle, tmp_path):
    import shutil

    folder, *_ = bundle
    copy = tmp_path / "old-bundle"
    shutil.copytree(folder, copy)
    (copy / "code.onnx").unlink()
    with pytest.raises(BundleError, match="has no code.onnx: export the bundle again"):
        DeviceModel(str(copy)).device_code(["i1"])


def test_the_device_loop_in_the_deployment_docs_runs(bundle, monkeypatch):
    """The docs' device loop, run as written against a bundle, with the service answered by its generator graph."""
    import os

    from recbole_duet import device
    from recbole_duet.serving.bundle_generator import BundleGenerator

    folder, manifest, model, loaders = bundle
    docs = open(os.path.join(os.path.dirname(__file__), os.pardir, "docs", "deployment.md"), encoding="utf-8").read()
    (block,) = [chunk.split("```")[0] for chunk in docs.split("```python\n")[1:] if "def device_loop" in chunk]
    generator = BundleGenerator(folder)
    asked = []

    def request_parameters(url, window, token=None):
        asked.append(list(window))
        return generator.generate([DeviceModel(folder).vocabulary.ids(window, "window")])[0]

    monkeypatch.setattr(device, "request_parameters", request_parameters)
    namespace = {}
    exec(block, namespace)
    _, histories = device_histories(model, loaders, n=1)
    tokens = [DeviceModel(folder).vocabulary.tokens[item] for item in histories[0]]
    for policy, expected_requests in (("always", len(tokens)), ("never", 0), ("every_k:2", (len(tokens) + 1) // 2)):
        asked.clear()
        tops = list(namespace["device_loop"](folder, "http://service", tokens, policy=policy))
        assert len(tops) == len(tokens) and all(len(top) == 10 for top in tops)
        assert len(asked) == expected_requests
    asked.clear()
    list(namespace["device_loop"](folder, "http://service", tokens, policy="drift:0.2"))
    assert 1 <= len(asked) <= len(tokens) and asked[0] == tokens[:1]


def test_deciding_on_the_device_imports_neither_torch_nor_recbole(bundle):
    import json
    import subprocess
    import sys

    folder, *_ = bundle
    script = (
        "import json, sys\n"
        "from recbole_duet.device import DeviceModel\n"
        "from recbole_duet.device.request_policy import RequestState, parse_policy\n"
        f"model = DeviceModel({folder!r})\n"
        "state = RequestState(parse_policy('drift:0.1'))\n"
        "asks = [state.decide(model.device_code(['i1', 'i2', 'i3'][: n + 1])) for n in range(3)]\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'recbole') or 'recbole_duet.model' in m)\n"
        "print(json.dumps({'asks': asks, 'heavy': heavy}))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["heavy"] == [] and report["asks"][0] is True


def test_a_device_without_interactions_replays_to_an_empty_boolean_mask():
    """An empty replay is still a mask: it selects from (empty) per-interaction arrays, where a float array fails."""
    for requests in (replay(EveryK(3), n=0), replay(Drift(0.5), codes=np.zeros((0, 4)))):
        assert requests.dtype == np.bool_ and requests.shape == (0,)
        assert np.arange(0)[requests].tolist() == []
    assert replay(Always(), n=2).dtype == np.bool_


def test_the_cosine_distance_ignores_both_lengths():
    assert cosine_distance([3.0, 4.0], [6.0, 8.0]) == 0.0  # the same direction at any length
    assert cosine_distance([2.0, 0.0], [3.0, 3.0]) == pytest.approx(1 - math.sqrt(0.5), abs=1e-15)
    assert cosine_distance([0.0, 0.5], [4.0, 0.0]) == 1.0
    assert cosine_distance([1.0, 0.0], [-3.0, 0.0]) == 2.0


def test_float32_codes_are_compared_in_double_precision():
    """The device graph's codes are float32: their distance is the one of the same values in float64, so a code
    that did not move is at distance 0 and not at float32's rounding of it."""
    code = np.array([0.1, 0.7, -0.3], dtype=np.float32)
    same_in_double = code.astype(np.float64)
    expected = cosine_distance(same_in_double, same_in_double)
    assert expected == pytest.approx(0.0, abs=1e-15)
    assert cosine_distance(code, code) == expected
    other = np.array([0.2, -0.1, 0.9], dtype=np.float32)
    assert cosine_distance(code, other) == cosine_distance(same_in_double, other.astype(np.float64))


def test_drift_2_is_a_valid_threshold_that_never_asks_again():
    codes = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
    assert replay(Drift(2), codes).tolist() == [True, False, False]
    assert parse_policy("drift:2") == Drift(2.0)


@pytest.mark.parametrize("k", [2.5, True, "3"])
def test_every_k_takes_only_an_integer(k):
    with pytest.raises((ValueError, TypeError)) as error:
        EveryK(k)
    assert error.type is ValueError and str(error.value) == f"every_k: k must be an integer >= 1, got {k!r}"
