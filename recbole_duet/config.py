"""RecBole's Config, taught about the DUET plugin and mended for today's stack.

What it adds to ``recbole.config.Config``:

* ``model: DUET`` and ``model: Finetune`` (the on-device fine-tuning baseline) resolve to the plugin's class for
  the chosen backbone (:func:`recbole_duet.model.plugin_class`); any other name is looked up in RecBole.
* A plugin model's defaults come from ``properties/model/<model>.yaml`` (and, where the plugin ships one for the
  chosen backbone, ``<model>-<backbone>.yaml`` over it, e.g. ``DUET-SASRec.yaml``: the keys that backbone's
  validation chose otherwise) layered over the chosen backbone's own RecBole
  yaml, so ``--backbone=GRU4Rec`` gets GRU4Rec's hyper-parameters unless the user overrides them;
  ``backbone: DIN`` also gets the evaluation protocol RecBole gives DIN (uni100, AUC and LogLoss).
* A plugin model's keys are checked before any data is read (:func:`validate_duet_settings`).
* The plugin's ``properties/dataset/<name>.yaml`` (e.g. ml-1m) is applied when it exists.
* ``model`` and ``dataset`` default to DUET and ml-100k; ml-100k is read from ``data_path`` when the user
  keeps a copy there, else from the copy inside the recbole wheel.
* ``detect_anomaly`` (default ``False``, every model): importing RecBole's sequential models switches autograd's
  anomaly mode on for the whole process (``sine.py`` calls ``torch.autograd.set_detect_anomaly(True)`` at import),
  which slows every training step by up to half; :func:`recbole_duet.quick_start.prepare_experiment` sets the
  mode from this key instead.
* ``fixed_valid_negatives`` (default ``False``, every model): under sampled evaluation, every validation of a run
  draws the same negatives (:mod:`recbole_duet.training.sampled_validation`); it needs ``worker: 0``, since
  loader workers draw from generators of their own.
* Sequential models with ``loss_type: CE`` default to no training negatives where RecBole would refuse to start
  otherwise (``overall.yaml`` asks for one); models that declare their own input type (RepeatNet, SINE, ...)
  keep RecBole's training negative.
* Model names are looked up without importing LightGBM/XGBoost (:mod:`recbole_duet.registry`), and a missing
  or malformed config file is reported by name (and line).
* What RecBole breaks on today's numpy, scipy and pandas is mended in memory (:mod:`recbole_duet.compat`).
* Distributed runs (``local_rank`` set) use gloo on CPU and NCCL on GPUs, where RecBole 1.2.1 hard-codes NCCL
  and ``cuda:<local_rank>`` (:mod:`recbole_duet.training.distributed`).
"""

import os

import yaml
from recbole.config import Config as RecBoleConfig
from recbole.utils import ModelType

from recbole_duet.compat import install_compatibility
from recbole_duet.config_checks import check_training_keys, known_keys, warn_about_near_misses
from recbole_duet.errors import ConfigError, ConfigFileError
from recbole_duet.model import CloudBase, model_name, plugin_class
from recbole_duet.model.backbones import recbole_properties_dir
from recbole_duet.model.settings import validate_duet_settings
from recbole_duet.registry import get_model
from recbole_duet.training.distributed import init_process_group, is_rank_zero

DEFAULT_MODEL = "DUET"
DEFAULT_DATASET = "ml-100k"
# RecBole loads these quick-start files for a model named DIN; DUET(DIN) and Finetune(DIN) get the same protocol.
DIN_QUICK_START = ("sequential_DIN.yaml", "sequential_DIN_on_{dataset}.yaml")
# Keys the plugin adds for every model (RecBole's or DUET), below every yaml and command-line value.
PLUGIN_DEFAULTS = {"detect_anomaly": False, "fixed_valid_negatives": False}


def properties_dir():
    """The plugin's yaml folder: inside the installed package, or the repository's top-level one."""
    package_dir = os.path.dirname(os.path.realpath(__file__))
    installed = os.path.join(package_dir, "properties")
    return installed if os.path.isdir(installed) else os.path.join(os.path.dirname(package_dir), "properties")


def known_config_keys():
    """Every key RecBole or the plugin reads: RecBole's yaml files (overall, datasets, each model's, so every
    backbone's), the plugin's (DUET.yaml holds every DUET key), the runner's own and ``PLUGIN_DEFAULTS``."""
    return known_keys(recbole_properties_dir(), properties_dir()) | set(PLUGIN_DEFAULTS)


class Config(RecBoleConfig):
    """Drop-in replacement for ``recbole.config.Config`` (same arguments, same behaviour otherwise)."""

    def compatibility_settings(self):
        install_compatibility()

    def _load_config_files(self, file_list):
        """RecBole's, one file at a time, so that a missing or malformed file is named (with the line at fault)."""
        file_config_dict = {}
        for path in file_list or ():
            if not os.path.isfile(path):
                raise ConfigFileError(f"Config file '{path}' does not exist (--config_files: space-separated paths).")
            try:
                file_config_dict.update(super()._load_config_files([path]))
            except yaml.YAMLError as error:
                mark = getattr(error, "problem_mark", None)
                line = f" line {mark.line + 1}" if mark else ""
                problem = getattr(error, "problem", error)
                raise ConfigFileError(f"Config file '{path}'{line} is not valid yaml: {problem}.") from None
            except (TypeError, ValueError):
                raise ConfigFileError(f"Config file '{path}' must hold 'key: value' lines.") from None
        return file_config_dict

    def _get_model_and_dataset(self, model, dataset):
        if model is None:
            model = self.external_config_dict.get("model", DEFAULT_MODEL)
        if dataset is None:
            dataset = self.external_config_dict.get("dataset", DEFAULT_DATASET)
        plugin_model = model_name(model)
        if plugin_model is not None:
            self.duet_defaults = self._read_properties(f"{plugin_model}.yaml")
            backbone = self.external_config_dict.get("backbone", self.duet_defaults["backbone"])
            backbone_yaml = f"{plugin_model}-{backbone}.yaml"
            if os.path.isfile(self._properties_path(backbone_yaml)):  # under the user's keys, as <model>.yaml
                self.duet_defaults.update(self._read_properties(backbone_yaml))
            side = self.external_config_dict.get("dynamic_side", self.duet_defaults.get("dynamic_side", "user"))
            return plugin_model, plugin_class(plugin_model, backbone, side), dataset
        return super()._get_model_and_dataset(get_model(model) if isinstance(model, str) else model, dataset)

    @staticmethod
    def _properties_path(name):
        return os.path.join(properties_dir(), "model", name)

    def _read_properties(self, name):
        with open(self._properties_path(name), "r", encoding="utf-8") as file:
            return yaml.load(file.read(), Loader=self.yaml_loader)

    def _load_yaml_if_present(self, *parts):
        path = os.path.join(*parts)
        return self._update_internal_config_dict(path) if os.path.isfile(path) else None

    def _load_internal_config_dict(self, model, model_class, dataset):
        super()._load_internal_config_dict(model, model_class, dataset)
        self.internal_config_dict.update(PLUGIN_DEFAULTS)
        if issubclass(model_class, CloudBase):
            self._load_duet_defaults(model, dataset)
        dataset_config = self._load_yaml_if_present(properties_dir(), "dataset", f"{dataset}.yaml")
        if dataset_config:
            self.parameters["Dataset"] += [key for key in dataset_config if key not in self.parameters["Dataset"]]

    def _load_duet_defaults(self, model, dataset):
        """Backbone yaml (and DIN's quick-start protocol) first, ``<model>.yaml`` over it, after checking the keys."""
        settings = {**self.duet_defaults, **self.external_config_dict}
        validate_duet_settings(settings, model)
        backbone = settings["backbone"]
        self._load_yaml_if_present(recbole_properties_dir(), "model", f"{backbone}.yaml")
        if backbone == "DIN":
            for name in DIN_QUICK_START:
                self._load_yaml_if_present(recbole_properties_dir(), "quick_start_config", name.format(dataset=dataset))
        self.internal_config_dict.update(self.duet_defaults)

    def _get_final_config_dict(self):
        final_config_dict = super()._get_final_config_dict()
        check_training_keys(final_config_dict)
        warn_about_near_misses(self.external_config_dict, known_config_keys())
        for key in PLUGIN_DEFAULTS:
            if not isinstance(final_config_dict[key], bool):
                raise ConfigError(key, final_config_dict[key], "true or false")
        if final_config_dict["fixed_valid_negatives"] and final_config_dict["worker"]:
            expected = "0 with fixed_valid_negatives (loader workers draw on their own)"
            raise ConfigError("worker", final_config_dict["worker"], expected)
        if (
            final_config_dict["MODEL_TYPE"] == ModelType.SEQUENTIAL
            and final_config_dict.get("loss_type") == "CE"
            and not hasattr(self.model_class, "input_type")  # RecBole checks CE against negatives only then
            and "train_neg_sample_args" not in self.external_config_dict
        ):
            final_config_dict["train_neg_sample_args"] = None
        return final_config_dict

    def _set_default_parameters(self):
        requested_data_path = self.final_config_dict["data_path"]
        super()._set_default_parameters()
        user_copy = os.path.join(requested_data_path, self.dataset)
        if self.dataset == DEFAULT_DATASET and os.path.isfile(os.path.join(user_copy, f"{self.dataset}.inter")):
            self.final_config_dict["data_path"] = user_copy

    def _init_device(self):
        """RecBole's single-process device set-up, then, for a process of a distributed run, its process group.

        RecBole's own distributed branch asserts one GPU per process, starts NCCL and moves to
        ``cuda:<local_rank>`` even on a CPU-only machine; ours keeps the device RecBole picks for one process
        (``cpu`` without a GPU or with ``gpu_id: ''``) and chooses the backend from it.
        """
        local_rank = self.final_config_dict.pop("local_rank", None)
        super()._init_device()
        use_cuda = self.final_config_dict["device"].type == "cuda"
        gpu_id, nproc = self.final_config_dict["gpu_id"], self.final_config_dict.get("nproc") or 1
        if use_cuda and nproc > len(gpu_id.split(",")):
            raise ConfigError("gpu_id", gpu_id, f"one GPU id per process (nproc={nproc}), or '' to train on CPU")
        if local_rank is None:
            return
        self.final_config_dict.update(local_rank=local_rank, single_spec=False)
        self.final_config_dict["device"] = init_process_group(self.final_config_dict, use_cuda)
        if not is_rank_zero(self.final_config_dict):
            self.final_config_dict.update(state="error", show_progress=False, verbose=False)
