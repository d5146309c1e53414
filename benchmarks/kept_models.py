"""The best models a harness run keeps in ``<folder>/models/`` (not committed), loaded again to score them after the
fact: at other parameter ages (:mod:`param_age`), through request policies (:mod:`request_policies`), under other
draws of a sampled validation's negatives (:mod:`valid_noise`)."""

import os

from benchmarks.report import selected_records
from benchmarks.run import load_records, split_name
from recbole_duet.config import Config
from recbole_duet.quick_start import prepare_experiment
from recbole_duet.training.checkpoint import load_checkpoint


def model_file(folder, record):
    """Where the harness kept the model of ``record`` (a training's own record: a family member scored from
    another's training, Base or Finetune, has none)."""
    stem = f"{record['dataset']}-{record['model']}-{record['seed']}" + (
        "" if record.get("learning_rate") is None else f"-lr{record['learning_rate']}"
    )
    return os.path.join(folder, "models", f"{stem}.pth")


def load_kept_model(record, folder, data_path):
    """The model the harness kept for ``record``, in evaluation mode and scoring as the record did (DUET's generated
    layers, Layers' global ones): ``(config, model, (train, valid, test data))``."""
    config_dict = {**record["config"], **({"data_path": data_path} if data_path else {}), "show_progress": False}
    member, _ = split_name(record["model"])
    model_name = record["model"] if member is None else "DUET"  # DUET-X and Layers-X are DUETs; X is RecBole's
    config = Config(model=model_name, dataset=record["dataset"], config_dict=config_dict)
    _, data, model = prepare_experiment(config)
    model.load_state_dict(load_checkpoint(model_file(folder, record))["state_dict"])
    return config, model.eval(), data


def kept_records(folder):
    """The folder's records at the learning rate chosen on validation whose model the harness kept."""
    records = selected_records(load_records(os.path.join(folder, "results.json")))
    return [r for r in records if os.path.isfile(model_file(folder, r))]


def trained_duet_records(folder):
    """The folder's kept DUET records (:func:`kept_records`)."""
    return [r for r in kept_records(folder) if r["model"].startswith("DUET-")]
