"""RecBole on today's pandas, quietly: missing features are filled on pandas 2 and 3, and a run prints no
warning the user cannot act on."""

import os
import subprocess
import sys
import warnings

import torch
from conftest import write_atomic_dataset

from recbole_duet.config import Config
from recbole_duet.quick_start import run_experiment


def write_item_file_with_gaps(data_path, name="tiny", n_items=40):
    """Rows for items 1-30, with an empty category cell, empty genre lists and an empty price."""
    lines = ["item_id:token\tcategory:token\tgenres:token_seq\tprice:float"]
    for item in range(1, 31):
        category = "" if item == 3 else f"c{item % 5}"
        genres = "" if item % 4 == 0 else f"g{item % 3} g{item % 7}"
        price = "" if item == 5 else f"{item / 2}"
        lines.append(f"i{item}\t{category}\t{genres}\t{price}")
    with open(os.path.join(data_path, name, f"{name}.item"), "w", encoding="utf-8") as file:
        file.write("\n".join(lines) + "\n")


def test_din_trains_on_item_features_with_gaps_without_chained_fills(din_config_dict):
    write_item_file_with_gaps(din_config_dict["data_path"])
    config_dict = {
        **din_config_dict,
        "load_col": {"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id", "category", "genres", "price"]},
    }
    config = Config(model="DIN", dataset="tiny", config_dict=config_dict)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # above the filter that hides RecBole's warnings
        run = run_experiment(config)
    assert not [w for w in caught if "chained assignment" in str(w.message)]
    assert 0.0 <= run["result"]["test_result"]["auc"] <= 1.0
    dataset = run["data"][0]._dataset
    items, item_tokens = dataset.item_feat, list(dataset.field2id_token["item_id"])
    assert items["category"][item_tokens.index("i3")] == 0  # an empty token cell is padding
    assert not torch.isnan(items["price"]).any()
    assert (items["genres"][item_tokens.index("i4")] == 0).all()  # an empty list is all padding


def test_a_run_prints_no_warning_the_user_cannot_act_on(tmp_path):
    data_path = write_atomic_dataset(str(tmp_path / "data"), item_file=True)
    args = ["--model=GRU4Rec", "--dataset=tiny", f"--data_path={data_path}", "--epochs=1", "--embedding_size=4"]
    args += ["--MAX_ITEM_LIST_LENGTH=5", "--show_progress=False", "--state=WARNING"]
    args += ["--load_col={'inter': ['user_id', 'item_id', 'timestamp'], 'item': ['item_id', 'category']}"]
    command = [sys.executable, "-c", "from recbole_duet.cli import main; main()", *args]
    completed = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "Warning" not in completed.stderr, completed.stderr[-3000:]
