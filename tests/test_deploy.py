"""Export and the device runtime: the bundle reproduces the PyTorch model for every backbone, the payload is
factored, small and versioned, and the device side imports neither torch nor RecBole."""

import base64
import glob
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import onnx
import pytest
import torch
from bundles import exported_bundle, perturbed_checkpoint
from conftest import build_pipeline
from hypothesis import given, settings
from hypothesis import strategies as st

from recbole_duet.deploy.graphs import DeviceParameters
from recbole_duet.deploy.verify import top10_agreement, top_k
from recbole_duet.device import DeviceModel
from recbole_duet.device.bundle import (
    PAYLOAD_DTYPES,
    BundleError,
    ModelVersionError,
    PayloadCodec,
    b85decode,
    b85encode_rows,
)
from recbole_duet.serving.bundle_generator import BundleGenerator

BACKBONES = {
    "SASRec-rank4": ("SASRec", {}),
    "SASRec-full": ("SASRec", {"generator_rank": 0}),
    "GRU4Rec-rank4": ("GRU4Rec", {}),
    "GRU4Rec-attention-encoder": ("GRU4Rec", {"head_encoder": "attention"}),
    "DIN-rank4": ("DIN", {}),
    "SASRec-no-stabilizer": ("SASRec", {"stabilizer": False}),
}


@pytest.fixture(scope="module", params=list(BACKBONES), ids=list(BACKBONES))
def bundle(request, tmp_path_factory):
    backbone, overrides = BACKBONES[request.param]
    return exported_bundle(str(tmp_path_factory.mktemp(request.param)), backbone, **overrides)


def test_layout_of_the_bundle(bundle):
    folder, manifest, model, _ = bundle
    for name in ("generator.onnx", "device.onnx", "code.onnx"):
        onnx.checker.check_model(os.path.join(folder, name))
    with open(os.path.join(folder, "items.json"), encoding="utf-8") as file:
        tokens = json.load(file)
    assert tokens[0] == "[PAD]" and set(tokens[1:]) == {f"i{item}" for item in range(1, 41)}
    assert manifest["n_items"] == len(tokens) == model.n_items
    assert len(manifest["model_version"]) == 16 and manifest["window_size"] == 4
    rank = manifest["generator_rank"]
    for layer, (out_dim, in_dim) in enumerate(manifest["layer_shapes"]):
        shapes = {entry["name"]: entry["shape"] for entry in manifest["payload"]}
        expected = [min(rank, out_dim, in_dim)] * 2 if rank else [out_dim, in_dim]
        assert shapes[f"layer{layer}.weight"] == expected and shapes[f"layer{layer}.bias"] == [out_dim]
        assert (f"layer{layer}.gate" in shapes) == manifest["stabilizer"]


def test_device_runtime_reproduces_full_sort_predict(bundle):
    """Every test user the deployed way (window -> service generator -> payload -> device) against PyTorch."""
    folder, manifest, model, loaders = bundle
    assert manifest["verification"]["users"] == 30
    assert manifest["verification"]["max_abs_score_diff"] <= 1e-4
    assert manifest["verification"]["top10_identical"] == 1.0
    assert manifest["verification"]["top10_identical_up_to_ties"] == 1.0
    rows = loaders[2]._dataset.inter_feat
    with torch.no_grad():
        reference = model.full_sort_predict(rows).numpy()
    device, generator = DeviceModel(folder), BundleGenerator(folder)
    tokens = device.vocabulary.tokens
    histories = [[tokens[i] for i in seq[:n].tolist()] for seq, n in zip(rows[model.ITEM_SEQ], rows[model.ITEM_SEQ_LEN])]
    for user, history in enumerate(histories):
        payload = generator.generate([device.vocabulary.ids(history[-4:], "window")])[0]
        recommended = device.recommend(history, json.loads(json.dumps(payload)), k=10)
        assert [token for token, _ in recommended] == [tokens[i] for i in top_k(reference[user])]
        np.testing.assert_allclose([score for _, score in recommended], reference[user][top_k(reference[user])], atol=1e-4)


def test_top10_agreement_forgives_only_what_the_reference_cannot_order():
    """Strictly (tolerance 0), only items with exactly the same reference score may change places."""
    reference = np.array([[0, 9, 8, 7, 7, 6, 5, 4, 3, 2, 1, 1, 0.5]], dtype=np.float32)  # 3 and 4 tie, 10 and 11
    one_bit_apart = reference.copy()
    one_bit_apart[0, [4, 11]] = np.nextafter(reference[0, [4, 11]], np.float32(10))  # 4 before 3, 11 makes the cut
    assert top_k(one_bit_apart)[0].tolist() == [1, 2, 4, 3, 5, 6, 7, 8, 9, 11]
    assert top10_agreement(one_bit_apart, reference, 0) == 1.0
    nearly_tied = reference.copy()
    nearly_tied[0, 4] = np.nextafter(np.float32(7), np.float32(0))  # the reference now orders 3 before 4
    assert top10_agreement(one_bit_apart, nearly_tied, 0) == 0.0
    assert top10_agreement(one_bit_apart, nearly_tied, 1e-4) == 1.0
    swapped = reference.copy()
    swapped[0, [1, 2]] = [8, 9]
    assert top10_agreement(np.concatenate([swapped, reference]), np.concatenate([reference, reference]), 1e-4) == 0.5


def test_the_payload_changes_the_scores(bundle):
    """Scoring one device's history with another device's payload gives other scores: the payload is used."""
    folder, _, model, loaders = bundle
    device, generator = DeviceModel(folder), BundleGenerator(folder)
    history = ["i3", "i4", "i5", "i6"]
    own, other = generator.generate([[3, 4, 5, 6], [30, 31, 32, 33]])
    assert np.abs(device.scores(history, own) - device.scores(history, other)).max() > 1e-3


def test_float16_payloads_are_half_the_size_and_close(bundle):
    folder, *_ = bundle
    device, generator = DeviceModel(folder), BundleGenerator(folder)
    history = ["i3", "i4", "i5", "i6"]
    single, half = generator.generate([[3, 4, 5, 6]])[0], generator.generate([[3, 4, 5, 6]], "float16")[0]
    assert half["dtype"] == "float16"
    assert len(b85decode(half["parameters"])) * 2 == len(b85decode(single["parameters"]))
    np.testing.assert_allclose(device.scores(history, half), device.scores(history, single), atol=0.05, rtol=0.01)


def test_a_payload_of_another_model_version_is_refused(bundle):
    folder, manifest, *_ = bundle
    device = DeviceModel(folder)
    payload = BundleGenerator(folder).generate([[3, 4]])[0]
    with pytest.raises(ModelVersionError, match=manifest["model_version"]):
        device.recommend(["i3"], {**payload, "model_version": "0123456789abcdef"})
    for broken, field in [
        ({**payload, "parameters": payload["parameters"][:-5]}, "parameters"),
        ({**payload, "parameters": "not base85 \""}, "parameters"),
        ({**payload, "dtype": "int8"}, "dtype"),
    ]:
        with pytest.raises(BundleError, match=field):
            device.recommend(["i3"], broken)
    with pytest.raises(BundleError, match=r"history\[1\]: unknown item token 'nope'"):
        device.recommend(["i3", "nope"], payload)


def test_payload_for_sasrec_defaults_fits_in_2_kb(tmp_path, tiny_config_dict):
    """DUET's defaults on SASRec's default width (64, two layers, rank 8, stabilizer): the JSON answer."""
    settings_ = {key: value for key, value in tiny_config_dict.items() if key not in ("hidden_size", "inner_size",
                 "n_layers", "n_heads", "generator_hidden_size", "generator_rank", "realtime_window")}
    _, _, model = build_pipeline(settings_)
    assert model.classifier.layer_shapes == [(64, 64), (64, 64)]
    model.eval()
    with torch.no_grad():
        parameters = DeviceParameters(model.generate(torch.ones(1, 3, dtype=torch.long), torch.tensor([3])))
    layout = [{"name": name, "shape": list(shape)} for name, shape in parameters.layout]
    codec = PayloadCodec({"model_version": "0123456789abcdef", "payload": layout})
    tensors = [np.random.default_rng(0).normal(size=(1, *shape)) for _, shape in parameters.layout]
    size = {dtype: len(json.dumps(codec.encode(tensors, dtype)[0], separators=(",", ":"))) for dtype in ("float32", "float16")}
    assert sum(np.prod(shape) for _, shape in parameters.layout) == 2 * (8 * 8 + 64 + 64)
    assert size["float32"] <= 2000 and size["float16"] <= 1100, size


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=40), min_size=1, max_size=4).filter(lambda rows: len(set(map(len, rows))) == 1))
def test_base85_matches_the_standard_library(rows):
    array = np.array([np.frombuffer(row, dtype=np.uint8) for row in rows], dtype=np.uint8).reshape(len(rows), -1)
    for row, characters in zip(rows, b85encode_rows(array)):
        text = characters.tobytes().decode("ascii")
        assert text == base64.b85encode(row).decode("ascii")
        assert b85decode(text) == row


def test_base85_of_batches_larger_than_one_chunk_matches_the_standard_library():
    """Large batches are encoded a chunk of rows at a time (one row per chunk for 40 KB rows)."""
    rng = np.random.default_rng(0)
    for rows in (rng.integers(0, 256, (3, 40001), dtype=np.uint8), rng.integers(0, 256, (150, 1536), dtype=np.uint8)):
        assert [text.tobytes() for text in b85encode_rows(rows)] == [base64.b85encode(row.tobytes()) for row in rows]


def test_payload_json_text_is_the_payload_json_would_write(bundle):
    """The service writes payloads as JSON text directly; it must be exactly what json.dumps writes."""
    folder, *_ = bundle
    generator = BundleGenerator(folder)
    tensors = generator.parameters([[3, 4, 5], [7], [1, 2, 3, 4, 5, 6]])
    for dtype in PAYLOAD_DTYPES:
        expected = [json.dumps(payload, separators=(",", ":")).encode() for payload in generator.codec.encode(tensors, dtype)]
        assert generator.codec.encode_json(tensors, dtype) == expected


def test_device_runtime_imports_neither_torch_nor_recbole(bundle):
    folder, *_ = bundle
    payload = BundleGenerator(folder).generate([[3, 4, 5]])[0]
    script = (
        "import json, sys\n"
        "from recbole_duet.device import DeviceModel\n"
        f"top = DeviceModel({folder!r}).recommend(['i3', 'i4', 'i5'], json.loads({json.dumps(payload)!r}), k=3)\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'recbole', 'recbole_duet.model'))\n"
        "print(json.dumps({'top': top, 'heavy': heavy}))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["heavy"] == [] and len(report["top"]) == 3


def test_export_command_on_a_trained_checkpoint(tmp_path, tiny_config_dict):
    from recbole_duet import run_recbole_duet

    run_recbole_duet(model="DUET", dataset="tiny", config_dict={**tiny_config_dict, "backbone": "GRU4Rec"})
    (checkpoint,) = glob.glob(str(tmp_path / "saved" / "DUET-*.pth"))
    command = [sys.executable, "-c", "from recbole_duet.cli import main; main()", "export", checkpoint]
    result = subprocess.run([*command, "--out", str(tmp_path / "b")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "'top10_identical': 1.0" in result.stdout
    assert "will not be used in RecBole" not in result.stdout + result.stderr  # the export's flags are not overrides
    assert sorted(os.listdir(tmp_path / "b")) == ["code.onnx", "device.onnx", "generator.onnx", "items.json", "manifest.json"]
    missing = subprocess.run([*command[:-1], str(tmp_path / "none.pth"), "--out", "x"], capture_output=True, text=True)
    assert missing.returncode != 0 and "none.pth" in missing.stderr.splitlines()[-1]


def test_only_duet_checkpoints_export(tmp_path):
    from recbole_duet.deploy.export import export_bundle
    from recbole_duet.errors import CheckpointError
    from recbole_duet.training.checkpoint import save_checkpoint

    save_checkpoint({"config": json.dumps({"model": "SASRec"}), "state_dict": {}}, str(tmp_path / "s.pth"))
    with pytest.raises(CheckpointError, match="only DUET checkpoints export"):
        export_bundle(str(tmp_path / "s.pth"), str(tmp_path / "b"))


def test_a_bundle_that_does_not_reproduce_the_model_is_refused(tmp_path, monkeypatch):
    """Verification is real: an export whose device graph misreads the payload fails and leaves no manifest."""
    from recbole_duet.deploy import graphs

    original = graphs.DeviceParameters.rebuild
    monkeypatch.setattr(graphs.DeviceParameters, "rebuild", lambda self, flat: original(self, [t * 0.5 for t in flat]))
    with pytest.raises(BundleError, match="does not reproduce the PyTorch model"):
        exported_bundle(str(tmp_path), "SASRec")
    assert not os.path.exists(tmp_path / "bundle" / "manifest.json")


def test_the_head_encoder_reads_the_same_state_as_a_packed_gru(tiny_config_dict):
    """The generator reads the GRU output at each window's last real position instead of packing the
    sequence (which neither ONNX exporter handles): the device codes must equal the packed GRU's."""
    from torch.nn.utils.rnn import pack_padded_sequence

    _, _, model = build_pipeline(tiny_config_dict)
    generator = model.generator
    window_emb = torch.randn(5, 4, 16)
    window_len = torch.tensor([1, 4, 2, 3, 4])
    packed = pack_padded_sequence(window_emb, window_len, batch_first=True, enforce_sorted=False)
    _, last_state = generator.head_encoder.gru(packed)
    torch.testing.assert_close(generator.encode(window_emb, window_len), last_state[-1], atol=1e-6, rtol=0)


def test_a_generator_reading_backbone_states_is_refused(tmp_path):
    from recbole_duet.deploy.export import export_bundle
    from recbole_duet.errors import ConfigError

    checkpoint, _, _ = perturbed_checkpoint(str(tmp_path), "SASRec", generator_input="backbone")
    with pytest.raises(ConfigError, match="generator_input"):
        export_bundle(checkpoint, str(tmp_path / "b"))


def verified(monkeypatch, reference, exported, max_users=1000):
    """``verify_bundle`` on stand-ins: a model whose ``full_sort_predict`` gives ``reference`` (users x items) and a
    device whose scores for user ``u`` are ``exported[u]`` (the generator's payload for a user is its row)."""
    from types import SimpleNamespace

    from recbole.data.interaction import Interaction

    from recbole_duet.deploy import verify

    class Generator:
        window_size = 2

        def __init__(self, folder):
            pass

        def generate(self, windows):
            return list(range(len(windows)))

    class Device:
        vocabulary = SimpleNamespace(tokens=[f"t{i}" for i in range(reference.shape[1])])

        def __init__(self, folder):
            pass

        def scores(self, history, payload):
            return exported[payload]

    monkeypatch.setattr(verify, "BundleGenerator", Generator)
    monkeypatch.setattr(verify, "DeviceModel", Device)
    users = len(reference)
    rows = Interaction({"item_id_list": torch.ones(users, 3, dtype=torch.long), "item_length": torch.full((users,), 2)})
    model = SimpleNamespace(
        ITEM_SEQ="item_id_list", ITEM_SEQ_LEN="item_length", full_sort_predict=lambda rows: torch.from_numpy(reference[: len(rows)])
    )
    return verify.verify_bundle("b", model, SimpleNamespace(_dataset=SimpleNamespace(inter_feat=rows)), max_users)


def scores_row():
    return np.array([0.0] + [0.1 * k for k in range(11, 0, -1)])  # padding, then items 1..11 best first


def test_the_verification_report_counts_a_swap_beyond_the_tolerance_at_both_levels(monkeypatch):
    """999 users match exactly; the last one has its two best items within 0.9e-4 of PyTorch's scores but in the other order,
    which PyTorch scores 1.5e-4 apart: both fractions are 0.999, just the target, so the bundle passes."""
    reference = np.tile(scores_row(), (1000, 1))
    reference[-1, [1, 2]] = [2.0 + 1.5e-4, 2.0]
    exported = reference.copy()
    exported[-1, [1, 2]] = [2.0 + 0.6e-4, 2.0 + 0.9e-4]
    report = verified(monkeypatch, reference, exported)
    assert report == {
        "users": 1000,
        "max_abs_score_diff": pytest.approx(0.9e-4, abs=1e-12),
        "top10_identical": 0.999,
        "top10_identical_up_to_ties": 0.999,
    }
    first_ten = verified(monkeypatch, reference, exported, max_users=10)  # the user with the swap is not among them
    assert first_ten == {"users": 10, "max_abs_score_diff": 0.0, "top10_identical": 1.0, "top10_identical_up_to_ties": 1.0}


def test_the_bundle_is_refused_past_either_target_and_kept_at_them(monkeypatch):
    reference = np.tile(scores_row(), (2, 1))
    at_the_limit = reference.copy()
    at_the_limit[:, 0] = 1e-4  # the padding item is never ranked: the score difference alone is at its limit
    report = verified(monkeypatch, reference, at_the_limit)
    assert report["max_abs_score_diff"] == 1e-4 and report["top10_identical"] == 1.0
    with pytest.raises(BundleError, match="does not reproduce the PyTorch model"):
        verified(monkeypatch, reference, reference + 0.01)  # the same rankings, every score off by 0.01
    swapped = reference.copy()
    swapped[1, [1, 2]] = swapped[1, [2, 1]]  # the same scores, one user's top two in the other order
    with pytest.raises(BundleError, match="top10_identical_up_to_ties >= 0.999"):
        verified(monkeypatch, reference, swapped)


def test_top_k_puts_equal_scores_in_item_id_order_in_a_long_row():
    """Past 16 items numpy's default sort is not stable: 30 items at 1 and 30 at 2 must come out by item id."""
    scores = np.array([[0.0] + [1.0] * 30 + [2.0] * 30], dtype=np.float32)
    assert top_k(scores)[0].tolist() == list(range(31, 41))
    assert top_k(scores, k=35)[0].tolist() == list(range(31, 61)) + [1, 2, 3, 4, 5]


def test_top_k_ranks_integer_scores_too():
    assert top_k([[9, 3, 1, 2, 3]], k=3).tolist() == [[1, 4, 3]]  # the padding's 9 does not count


def test_top_k_never_returns_the_padding_however_large_k_is():
    assert top_k([[9, 3, 1, 2, 3]], k=10).tolist() == [[1, 4, 3, 2]]


def test_encoded_json_payloads_are_float32_unless_asked():
    codec = PayloadCodec({"model_version": "v1", "payload": [{"name": "w", "shape": [2]}]})
    tensors = [np.array([[1.0, -2.0], [0.5, 0.0]])]
    texts = codec.encode_json(tensors)
    assert [json.loads(text) for text in texts] == codec.encode(tensors, "float32")
    assert json.loads(texts[0])["dtype"] == "float32"
    np.testing.assert_array_equal(codec.decode(json.loads(texts[1]))["w"], [[0.5, 0.0]])


class Noisy(torch.nn.Module):
    """Doubles its input, warning while traced as the exporter and the model's own code might."""

    def forward(self, x):
        warnings.warn("shapes read as constants", torch.jit.TracerWarning)
        warnings.warn("Exporting a model to ONNX with a batch_size other than 1, with a variable length ...")
        warnings.warn("a warning the export does not expect", UserWarning)
        return x * 2


def test_the_export_hides_only_tracer_and_batch_size_warnings_and_names_the_outputs(tmp_path):
    from recbole_duet.deploy.export import _export_graph

    path = str(tmp_path / "noisy.onnx")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _export_graph(Noisy(), (torch.ones(2, 3),), path, ["x"], ["doubled"], {"x": {0: "batch"}, "doubled": {0: "batch"}})
    messages = {str(warning.message) for warning in caught}
    assert "a warning the export does not expect" in messages
    assert not [m for m in messages if m.startswith(("shapes read as constants", "Exporting a model to ONNX with a batch"))]
    exported = onnx.load(path)
    assert [value.name for value in exported.graph.input] == ["x"]
    assert [value.name for value in exported.graph.output] == ["doubled"]
    assert [entry.version for entry in exported.opset_import if entry.domain in ("", "ai.onnx")] == [17]  # ONNX_OPSET


@pytest.mark.parametrize("bundle", ["GRU4Rec-rank4"], indirect=True)
def test_recommend_gives_ten_items_best_first_equal_scores_by_item_id(bundle, monkeypatch):
    folder, *_ = bundle
    device = DeviceModel(folder)
    assert (device.options.intra_op_num_threads, device.options.inter_op_num_threads) == (1, 1)  # one core by default
    used = device.session.get_session_options()  # the options the session was built with, not onnxruntime's defaults
    assert (used.intra_op_num_threads, used.inter_op_num_threads) == (1, 1)
    n = len(device.vocabulary)
    scores = np.array([5.0] + [1.0] * 20 + [2.0] * (n - 21), dtype=np.float32)  # the padding's 5 never counts
    monkeypatch.setattr(device, "scores", lambda history, payload: scores.copy())
    tokens = device.vocabulary.tokens
    assert device.recommend(["any"], None) == [(tokens[item], 2.0) for item in range(21, 31)]
    everything = device.recommend(["any"], None, k=n + 5)  # more than the catalogue: every item once, no padding
    assert [token for token, _ in everything] == [tokens[i] for i in [*range(21, n), *range(1, 21)]]
    with pytest.raises(BundleError) as error:
        DeviceModel(folder).recommend([], device.global_payload())
    assert str(error.value) == "history: needs at least one item"


def graph_interface(path):
    """``({input: dims}, {output: dims})`` of an ONNX file, a dim being its symbolic name or its size."""
    graph = onnx.load(path).graph

    def dims(value):
        return [dim.dim_param or dim.dim_value for dim in value.type.tensor_type.shape.dim]

    return {value.name: dims(value) for value in graph.input}, {value.name: dims(value) for value in graph.output}


@pytest.mark.parametrize("backbone", ["GRU4Rec", "DIN"])
def test_the_graphs_name_their_inputs_outputs_and_batch_axes(tmp_path, backbone):
    """The graphs are the bundle's interface to a device runtime in any language: outputs by name, the device batch
    (and DIN's candidate) axes symbolic. Exported here, not by the module's fixture, so that each export runs here."""
    folder, manifest, *_ = exported_bundle(str(tmp_path), backbone, verify_users=0)
    payload = [entry["name"] for entry in manifest["payload"]]
    inputs, outputs = graph_interface(os.path.join(folder, "generator.onnx"))
    assert inputs == {"window": ["devices", 4], "window_len": ["devices"]}
    assert list(outputs) == payload and {name: dims[0] for name, dims in outputs.items()} == dict.fromkeys(payload, "devices")
    inputs, outputs = graph_interface(os.path.join(folder, "device.onnx"))
    assert inputs["item_seq"] == ["devices", 8] and inputs["item_seq_len"] == ["devices"]
    assert list(inputs)[-len(payload):] == payload and all(inputs[name][0] == "devices" for name in payload)
    if backbone == "DIN":
        assert list(inputs)[2] == "items" and inputs["items"] == ["devices", "candidates"]
        assert outputs == {"scores": ["devices", "candidates"]}
    else:
        assert len(inputs) == 2 + len(payload) and outputs == {"scores": ["devices", manifest["n_items"]]}
    inputs, outputs = graph_interface(os.path.join(folder, "code.onnx"))
    assert inputs == {"item_seq": ["devices", 8], "item_seq_len": ["devices"]}
    assert list(outputs) == ["code"] and outputs["code"][0] == "devices"


def test_a_re_export_replaces_the_bundle_reads_a_moved_dataset_and_verifies_1000_users(tmp_path, monkeypatch):
    """Exporting again into a bundle folder replaces its manifest; ``data_path`` finds a dataset moved since
    training; verification runs on at most 1,000 test users unless told (the check itself is stubbed here)."""
    from recbole_duet.deploy import verify
    from recbole_duet.deploy.export import export_bundle

    checkpoint, _, _ = perturbed_checkpoint(str(tmp_path), "GRU4Rec")
    os.rename(tmp_path / "data", tmp_path / "moved")
    asked = []
    monkeypatch.setattr(verify, "verify_bundle", lambda folder, model, loader, users: asked.append(users) or {"users": 30})
    folder = tmp_path / "bundle"
    folder.mkdir()
    (folder / "manifest.json").write_text('{"model_version": "an earlier export"}')
    monkeypatch.setattr(sys, "argv", ["pytest"])
    monkeypatch.chdir(tmp_path)
    manifest = export_bundle(checkpoint, str(folder), data_path=str(tmp_path / "moved"))
    assert asked == [1000] and manifest["verification"] == {"users": 30}
    assert manifest["dataset"] == "tiny" and manifest["backbone"] == "GRU4Rec"
    assert manifest["checkpoint"] == "DUET-perturbed.pth" and manifest["dtype"] == "float32"
    with open(folder / "manifest.json", encoding="utf-8") as file:
        assert json.load(file) == manifest
    assert "verification" in export_bundle(checkpoint, str(folder), str(tmp_path / "moved"), verify_users=1)
    assert "verification" not in export_bundle(checkpoint, str(folder), str(tmp_path / "moved"), verify_users=0)
    assert asked == [1000, 1]  # 0: no check at all


def test_a_checkpoint_of_another_model_is_refused_naming_the_model(tmp_path):
    from recbole_duet.deploy.export import export_bundle
    from recbole_duet.errors import CheckpointError
    from recbole_duet.training.checkpoint import save_checkpoint

    save_checkpoint({"config": json.dumps({"model": "SASRec"}), "state_dict": {}}, str(tmp_path / "s.pth"))
    with pytest.raises(CheckpointError) as error:
        export_bundle(str(tmp_path / "s.pth"), str(tmp_path / "b"))
    assert f"Checkpoint '{tmp_path / 's.pth'}' holds model 'SASRec': only DUET checkpoints export." in str(error.value)


def test_the_model_version_hashes_names_dtypes_shapes_and_bytes():
    """The documented recipe, by hand: an int64 buffer by its own bytes, a bfloat16 tensor (which numpy lacks) by
    its float32 values."""
    import hashlib

    from recbole_duet.deploy.export import model_version

    state = {"b": torch.tensor([1.5, -2.0], dtype=torch.bfloat16), "a": torch.tensor([3, 70000], dtype=torch.int64)}
    digest = hashlib.sha256()
    digest.update(b"a:torch.int64:(2,)")
    digest.update(np.array([3, 70000], dtype=np.int64).tobytes())
    digest.update(b"b:torch.bfloat16:(2,)")
    digest.update(np.array([1.5, -2.0], dtype=np.float32).tobytes())
    assert model_version(state) == digest.hexdigest()[:16]


def test_a_checkpoint_saved_on_a_gpu_exports_on_a_cpu_only_machine(tmp_path, monkeypatch):
    """Tensors saved from a GPU are tagged ``cuda:0``; export maps them to the CPU instead of failing to load them
    (the tag is forged here, so this runs without a GPU)."""
    import torch.serialization

    from recbole_duet.deploy.export import export_bundle

    if torch.cuda.is_available():
        pytest.skip("the point is a machine without CUDA")
    with monkeypatch.context() as patch:
        patch.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        checkpoint, _, _ = perturbed_checkpoint(str(tmp_path), "GRU4Rec")
    with pytest.raises(RuntimeError, match="CUDA"):
        torch.load(checkpoint, weights_only=True)  # the forged tag holds
    monkeypatch.setattr(sys, "argv", ["pytest"])
    monkeypatch.chdir(tmp_path)
    manifest = export_bundle(checkpoint, str(tmp_path / "bundle"), verify_users=0)
    assert manifest["backbone"] == "GRU4Rec" and os.path.isfile(tmp_path / "bundle" / "device.onnx")


def test_export_builds_the_generated_model_whatever_the_training_run_started_from(tmp_path, monkeypatch):
    """A checkpoint trained with ``duet_inference: global``, from a backbone checkpoint (frozen) that is gone since:
    the export still builds the personalised model from the checkpoint's weights alone, and it verifies."""
    from recbole_duet.deploy.export import export_bundle
    from recbole_duet.training.checkpoint import load_checkpoint, save_checkpoint

    checkpoint, _, _ = perturbed_checkpoint(str(tmp_path), "GRU4Rec")
    saved = load_checkpoint(checkpoint)
    config = json.loads(saved["config"])
    config.update(duet_inference="global", backbone_checkpoint=str(tmp_path / "gone.pth"), freeze_backbone=True)
    saved["config"] = json.dumps(config)
    save_checkpoint({key: value for key, value in saved.items() if key != "format"}, checkpoint)
    monkeypatch.setattr(sys, "argv", ["pytest"])
    monkeypatch.chdir(tmp_path)
    manifest = export_bundle(checkpoint, str(tmp_path / "bundle"))
    assert manifest["verification"]["users"] == 30 and manifest["verification"]["top10_identical_up_to_ties"] == 1.0


def test_the_refusal_of_a_backbone_reading_generator_says_what_to_train(tmp_path):
    from recbole_duet.deploy.export import export_bundle
    from recbole_duet.errors import ConfigError

    checkpoint, _, _ = perturbed_checkpoint(str(tmp_path), "SASRec", generator_input="backbone")
    with pytest.raises(ConfigError) as error:
        export_bundle(checkpoint, str(tmp_path / "b"))
    assert error.value.key == "generator_input"
    assert str(error.value) == (
        "Invalid value 'backbone' for config key 'generator_input': expected 'window' to export: with 'backbone' the "
        "generator reads the backbone's states over the whole history, so the service would need each device's "
        "history instead of its real-time window."
    )


@pytest.mark.parametrize("payload, kind", [("text", "str"), ([1], "list"), (None, "NoneType")])
def test_a_payload_that_is_not_an_object_is_named_by_its_type(payload, kind):
    codec = PayloadCodec({"model_version": "v1", "payload": [{"name": "w", "shape": [2]}]})
    with pytest.raises(BundleError) as error:
        codec.decode(payload)
    assert str(error.value) == f"payload must be a JSON object (a dict), got {kind}"


def test_payload_refusals_name_the_field_at_fault():
    codec = PayloadCodec({"model_version": "v1", "payload": [{"name": "w", "shape": [2]}]})
    (good,) = codec.encode([np.array([[1.0, -2.0]])])

    def refusal(payload):
        with pytest.raises(BundleError) as error:
            codec.decode(payload)
        return str(error.value)

    assert refusal({"model_version": "v1", "dtype": "float32"}) == "payload 'parameters' is not base85 text: expected ASCII text"
    assert refusal({**good, "parameters": "caf\u00e9"}) == "payload 'parameters' is not base85 text: expected ASCII text"
    assert refusal({"error": "overloaded"}) == "payload is the service's error answer, not parameters: overloaded"
    assert refusal({**good, "model_version": "v0"}) == (
        "payload 'model_version' is 'v0' but this bundle is version 'v1': "
        "update the bundle or ask the service that serves this version"
    )
    assert refusal({**good, "dtype": "int8"}) == f"payload 'dtype' must be one of {list(PAYLOAD_DTYPES)}, got 'int8'"
    assert refusal({**good, "parameters": "ab cd"}) == "payload 'parameters' is not base85 text: character ' ' is not base85"
    assert refusal({**good, "parameters": "~~~~~"}) == (
        "payload 'parameters' is not base85 text: a 5-character group overflows 32 bits"
    )
    (three,) = PayloadCodec({"model_version": "v1", "payload": [{"name": "w", "shape": [3]}]}).encode([np.ones((1, 3))])
    assert refusal(three) == "payload 'parameters' holds 12 bytes, this bundle's layout needs 8"
    # a payload that carries parameters is decoded even beside an 'error' field
    np.testing.assert_array_equal(codec.decode({**good, "error": "ignored"})["w"], [[1.0, -2.0]])


def test_base85_text_of_any_length_decodes_as_the_standard_library_does():
    """Lengths not a multiple of 4 bytes end in a short group, padded with the highest digit before decoding."""
    for size in range(1, 10):
        data = bytes((37 * i + 200) % 256 for i in range(size))
        assert b85decode(base64.b85encode(data).decode("ascii")) == data
    assert b85decode(base64.b85encode(b"\xff\xff\xff").decode("ascii")) == b"\xff\xff\xff"
    # text no encoder wrote (its short group is not rounded down) decodes as the standard library's does too
    assert b85decode("aYp") == base64.b85decode("aYp") == b"qF"
    assert b85decode("|NsC0") == b"\xff\xff\xff\xff"  # 85-digit |NsC0 is 2**32 - 1, the largest group
    with pytest.raises(ValueError) as error:
        b85decode("|NsC1")  # 2**32
    assert str(error.value) == "a 5-character group overflows 32 bits"


def test_a_folder_that_is_no_bundle_is_refused_naming_the_file(tmp_path):
    from recbole_duet.device.bundle import read_manifest

    path = tmp_path / "manifest.json"
    with pytest.raises(BundleError) as error:
        read_manifest(str(tmp_path))
    assert str(error.value) == f"'{tmp_path}' is not a recbole-duet bundle: '{path}' does not exist."
    path.write_text('{"format": "recbole-duet-bundle-v0"}')
    with pytest.raises(BundleError) as error:
        read_manifest(str(tmp_path))
    assert str(error.value) == f"'{path}' is not a recbole-duet-bundle-v1 manifest (format: 'recbole-duet-bundle-v0')."
    path.write_text('{"format": "recbole-duet-bundle-v1", "n_items": 3}')
    assert read_manifest(str(tmp_path)) == {"format": "recbole-duet-bundle-v1", "n_items": 3}
