"""Benchmark DUET against its backbones, on-device fine-tuning and any RecBole model, with one protocol.

    python -m benchmarks.run --suite quick --dataset ml-100k --seeds 3 \\
        --models SASRec DUET-SASRec Base-SASRec Finetune-SASRec GRU4Rec DUET-GRU4Rec Base-GRU4Rec Finetune-GRU4Rec \\
        --out benchmarks/results/ml-100k-quick

Model names: any RecBole model (trained as RecBole would); two families of rows on a next-item backbone, each
family sharing one training per seed and learning rate:

* ``DUET-<backbone>`` (``model: DUET``) and ``Base-<backbone>``, the same trained DUET scored with its global
  layers alone (``duet_inference: global``); at the default ``training_order: cloud_first`` the training is two
  (:mod:`recbole_duet.training.cloud_first`), so Base is the cloud model the first one kept, and the records keep that
  first training's epochs, validation and test under ``cloud_stage``;
* ``Layers-<backbone>``: the cloud model without a generator, i.e. the backbone with the same extra (dynamic)
  layers trained as ordinary global layers (DUET with ``duet_inference: global``; with DIN, whose dynamic layers
  are its own prediction MLP, that is DIN trained as DIN is, so the family shares DIN's own training and
  ``Layers-DIN`` is DIN's record under that name); ``Finetune-<backbone>`` and
  ``FinetuneAll-<backbone>``: the fine-tuning baseline (``model: Finetune``, ``finetune_scope: dynamic`` /
  ``all``) on that model's best checkpoint (``cloud_checkpoint``), each device tuning its dynamic layers, or every
  parameter, on its own window. Fine-tuning starts from the Layers model, the cloud model trained without a
  generator, not from DUET's global layers, so that it never depends on DUET's settings (at ``umn_weight: 0``
  those layers are only the base of the generated update, no cloud model to tune).

Every model gets the same data, split (``--protocol``: leave-one-out, or the global time split), evaluation,
budget and early stopping (on valid NDCG@10); DUET's best checkpoint is chosen with its generated layers.

Learning rate: with ``--lr-grid`` (the standard suite's default) every training of the first seed runs once
per rate, and each later seed uses the rate whose first-seed run had the best valid NDCG@10 for that training
(the trained member, DUET-X or Layers-X, decides for its family); tables report, per model and seed, the run at
the chosen rate.

With ``--backbones-from FOLDER`` (and e.g. ``--config-files benchmarks/configs/frozen-backbone.yaml``) every family
training starts its backbone from the backbone's own run of the same seed in ``FOLDER`` (the best model each
plain training keeps in ``<out>/models/``), so DUET and the extra layers are trained on top of the very model
they are compared with. With ``--cloud-from FOLDER`` every DUET training starts from the Layers run of the same
seed in ``FOLDER`` (its backbone and global layers, kept fixed: ``cloud_checkpoint``) and learns the generator on
top of it, the paper's order: the cloud model first, with its own early stopping, then the generator (what a
``cloud_first`` DUET training does by itself; ``--cloud-from`` reuses Layers runs that are rows already).

Results are appended to ``<out>/results.json`` after every training (with its wall-clock seconds), and every
record's per-user test metrics go to ``<out>/per_user/*.npz``, so a stopped run resumes without redoing
finished trainings and paired statistics never need a retraining. A training in progress keeps its whole state
in ``<out>/checkpoints/`` after every epoch (:mod:`recbole_duet.training.state`), so a harness stopped
mid-training (e.g. at the end of a session) goes on from the last finished epoch. Several harness processes
may share one ``--out`` as long as no training is in two of them (``DIN`` and ``Layers-DIN`` are one training).
``results.md`` (with paired bootstrap CIs) and the PNG
plots are rewritten at the end.
"""

import argparse
import fcntl
import json
import os
import platform
import shutil
import sys
import time

import torch
import yaml
from recbole.utils import InputType

from benchmarks.adaptation import measure_finetuning, measure_generation
from benchmarks.per_user import evaluate_per_user, save_per_user
from benchmarks.report import (
    epoch_cap_line,
    machines_line,
    paired_comparisons,
    paired_lines,
    per_user_mean_lines,
    ratio_lines,
    reported_models,
    selected_records,
    summary_table,
    write_plots,
)
from recbole_duet.config import Config
from recbole_duet.model import plugin_class
from recbole_duet.quick_start import build_model, run_experiment
from recbole_duet.training.allocator import freed_memory_kept, keep_freed_memory
from recbole_duet.training.cloud_first import cloud_state_file
from recbole_duet.training.run_log import plain_metrics
from recbole_duet.training.sampled_validation import validation_draws
from recbole_duet.training.trainer import get_trainer

# How the data is split (--protocol). leave-one-out: each user's last item is the test case, the one before it the
# validation case, everything earlier trains. time-split: RecBole's global time split; every interaction after the
# time that leaves the last 10% of them is a test case, scored with the user's whole history up to it (before and
# after the boundary), and training and validation targets all come from before it (tests/test_time_split.py).
PROTOCOLS = {
    "leave-one-out": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full"},
    "time-split": {"split": {"TS": [0.8, 0.1, 0.1]}, "order": "TO", "mode": "full"},
}


def protocol_eval_args(protocol, config_files):
    """The ``eval_args`` of ``protocol`` with what ``config_files`` (``(path, settings)`` pairs) add to them, e.g. a
    sampled ``mode: uni100`` for DIN, so that one file serves both protocols. A file cannot change the split or the
    order: RecBole would take its ``eval_args`` whole, and ``--protocol time-split`` would quietly split otherwise.

    Raises:
        ValueError: naming the file and key whose split or order is not the protocol's.
    """
    eval_args = dict(PROTOCOLS[protocol])
    for path, settings in config_files:
        for key, value in (settings.get("eval_args") or {}).items():
            if key in ("split", "order") and value != eval_args[key]:
                raise ValueError(
                    f"{path}: eval_args.{key} {value} is not --protocol {protocol}'s {eval_args[key]}; "
                    f"leave the {key} to --protocol"
                )
            eval_args[key] = value
    return eval_args


PROTOCOL = {
    "eval_args": PROTOCOLS["leave-one-out"],
    "metrics": ["Recall", "MRR", "NDCG", "Hit"],
    "topk": [10],
    "valid_metric": "NDCG@10",
    "train_batch_size": 2048,
    "eval_batch_size": 4096,
    "show_progress": False,
}
SUITES = {
    # quick: a smoke profile; a higher learning rate than RecBole's 0.001 so that 5 epochs on a CPU get somewhere.
    "quick": {"MAX_ITEM_LIST_LENGTH": 10, "epochs": 5, "stopping_step": 2, "learning_rate": 0.005},
    # standard: trained to convergence (patience 5, a cap that should rarely be hit); histories of 20 while the
    # generator's window stays at DUET's default 10, so the window is the newest part of the history.
    "standard": {"MAX_ITEM_LIST_LENGTH": 20, "epochs": 100, "stopping_step": 5},
    "full": {"MAX_ITEM_LIST_LENGTH": 50, "epochs": 300, "stopping_step": 10},
}
SUITE_LR_GRIDS = {"standard": [0.001, 0.003]}
FIRST_SEED = 2020
# Members of a family share one training (DUET, or the cloud model without a generator). A member is either the
# trained model scored with its own inference settings ("inference"), or another model on the training's best
# checkpoint, its cloud_checkpoint ("model", with "config" on top of the training's): the fine-tuning baseline.
FAMILIES = {
    "DUET": {"DUET": {"inference": "generated"}, "Base": {"inference": "global"}},
    "Layers": {
        "Layers": {"inference": "global"},
        "Finetune": {"model": "Finetune", "config": {"finetune_scope": "dynamic"}},
        "FinetuneAll": {"model": "Finetune", "config": {"finetune_scope": "all"}},
    },
}
# What a device's adaptation costs, measured for the members that adapt in batches (FinetuneAll tunes a whole model
# per device: its test pass per user is its cost).
ADAPTATION = {"DUET": measure_generation, "Finetune": measure_finetuning}
FAMILY_TRAINING = {"DUET": {}, "Layers": {"duet_inference": "global"}}  # config of each family's training
FAMILY_OF = {member: family for family, members in FAMILIES.items() for member in members}
FAMILY_NAMES = {family.lower(): family for family in FAMILIES}  # a job's kind -> its family


def trains_as_backbone(family, backbone):
    """Whether ``family``'s training on ``backbone`` is the backbone's own training. Where the cloud model is the
    backbone alone (``cloud_is_backbone``: DUET(DIN)'s dynamic layers are DIN's prediction MLP), the Layers model is
    the backbone, trained as it is (the same seed gives the same weights: tests/test_din.py): its family shares the
    backbone's training instead of repeating it."""
    return family == "Layers" and plugin_class("DUET", backbone).cloud_is_backbone


def member_model_config(member, backbone, training_config, checkpoint):
    """``(model, config_dict)`` of a family member that is a model of its own (``FAMILIES``' "model") on ``backbone``,
    on the family's best checkpoint ``checkpoint``; None for a member that is the trained model itself. Keys the
    training was started with are not the member's: it starts from the checkpoint."""
    spec = FAMILIES[FAMILY_OF[member]][member]
    if "model" not in spec:
        return None
    starts = ("backbone_checkpoint", "freeze_backbone", "cloud_checkpoint", *FAMILY_TRAINING[FAMILY_OF[member]])
    config_dict = {key: value for key, value in training_config.items() if key not in starts}
    return spec["model"], {**config_dict, **spec["config"], "backbone": backbone, "cloud_checkpoint": checkpoint}


def split_name(name):
    """``'Finetune-SASRec'`` -> ``('Finetune', 'SASRec')``; a RecBole model name -> ``(None, name)``."""
    member, _, backbone = name.partition("-")
    return (member, backbone) if member in FAMILY_OF and backbone else (None, name)


class Harness:
    """Runs trainings for one dataset and output folder, and turns each into result records."""

    def __init__(self, args):
        self.args = args

    def label(self, name, seed, learning_rate):
        """The file-name stem of one run: dataset, model or family member, seed, learning rate."""
        return f"{self.args.dataset}-{name}-{seed}" + ("" if learning_rate is None else f"-lr{learning_rate}")

    def state_file(self, job, seed, learning_rate):
        """Where a training's state is kept after every epoch, so that a stopped harness resumes it mid-way."""
        stem = self.label(training_name(job), seed, learning_rate)
        return os.path.join(self.args.out, "checkpoints", f"{stem}.state.pth")

    def checkpoint_dir(self, job, seed, learning_rate):
        """RecBole's ``checkpoint_dir`` for one training: RecBole names its best-model file by model and the second
        the trainer was built, so two harness processes starting a ``DUET`` training in one second would
        otherwise write one file."""
        return os.path.join(self.args.out, "checkpoints", self.label(training_name(job), seed, learning_rate))

    def model_file(self, folder, name, seed, learning_rate):
        """Where a training (``SASRec``, ``Layers-SASRec``, ...) keeps its best model: the start of
        ``--backbones-from`` and ``--cloud-from`` families."""
        return os.path.join(folder, "models", f"{self.label(name, seed, learning_rate)}.pth")

    def keep_model(self, run, name, seed, learning_rate):
        target = self.model_file(self.args.out, name, seed, learning_rate)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(run["trainer"].saved_model_file, target + ".tmp")
        os.replace(target + ".tmp", target)

    def trained_model(self, folder, flag, job, seed):
        """The best model of ``job``'s run of ``seed`` in ``folder`` (at the rate the folder chose for it)."""
        records = load_records(os.path.join(folder, "results.json"))
        name = training_name(job)
        try:  # the folder's own rule: the seed's run with the best valid NDCG@10
            rate = chosen_learning_rate(job, records, self.args.dataset, seed)
        except RuntimeError:
            raise RuntimeError(f"{flag} {folder}: no {name} run of seed {seed} on {self.args.dataset} there") from None
        path = self.model_file(folder, name, seed, rate)
        if not os.path.isfile(path):
            raise RuntimeError(f"{flag} {folder}: {path} is missing (only runs since models were kept have one)")
        return path

    def member_trainer(self, job, seed, learning_rate, member, config_dict, run):
        """A trainer holding the model ``member`` (a family member, or None for a plain model) scores with, and
        whether that is the trained model as trained: the training's own model (scored with the member's inference
        settings, except in a plain training, which is the model as trained), or the member's own model on the
        training's best checkpoint (:func:`member_model_config`)."""
        kind, backbone, _ = job
        trainer = run["trainer"]
        checkpoint = self.model_file(self.args.out, training_name(job), seed, config_dict.get("learning_rate"))
        own = None if member is None else member_model_config(member, backbone, config_dict, checkpoint)
        if own is None:  # the trained model itself
            if kind == "plain":
                return trainer, True
            trainer.model.inference = FAMILIES[FAMILY_OF[member]][member]["inference"]
            return trainer, member == FAMILY_NAMES[kind]
        model, member_config = own
        where = {"checkpoint_dir": self.checkpoint_dir(job, seed, learning_rate)}  # it saves nothing there
        config = Config(model=model, dataset=self.args.dataset, config_dict={**member_config, **where})
        train_data = run["data"][0]
        own_trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, build_model(config, train_data._dataset))
        own_trainer.eval_collector.data_collect(train_data)  # what fit does first, for metrics counting training items
        return own_trainer, False

    def train(self, job, model, overrides, seed, learning_rate):
        config_dict = {**self.args.protocol, **SUITES[self.args.suite], **self.args.overrides, **overrides, "seed": seed}
        if learning_rate is not None:
            config_dict["learning_rate"] = learning_rate
        if self.args.data_path:
            config_dict["data_path"] = self.args.data_path
        start = time.perf_counter()
        where = {"checkpoint_dir": self.checkpoint_dir(job, seed, learning_rate)}  # not part of the record's config
        config = Config(model=model, dataset=self.args.dataset, config_dict={**config_dict, **where})
        run = run_experiment(config, saved=True, state_file=self.state_file(job, seed, learning_rate))
        resumed_seconds = run["resumed_seconds"] + run.get("cloud_stage", {}).get("resumed_seconds", 0.0)
        run["wall_seconds"] = resumed_seconds + time.perf_counter() - start
        return config_dict, run

    def record(self, name, backbone, seed, config_dict, run, valid):
        """A result record; its test metrics are re-evaluated with per-user metrics kept (same checkpoint)."""
        start = time.perf_counter()
        # a pointwise model (DIN, DUET(DIN)) scores with probabilities, so a sampled evaluation also has its LogLoss
        pointwise = run["trainer"].config["MODEL_INPUT_TYPE"] == InputType.POINTWISE
        test, per_user = evaluate_per_user(run["trainer"], run["data"][2], probabilities=pointwise)
        test_seconds = time.perf_counter() - start
        lr = config_dict.get("learning_rate")
        return {
            "dataset": self.args.dataset,
            "model": name,
            "backbone": backbone,
            "seed": seed,
            "suite": self.args.suite,
            "learning_rate": lr,
            "config": config_dict,
            "valid": valid,
            "test": plain_metrics(test),
            "epochs": run["epochs"],
            "epoch_seconds": run["fit_seconds"] / max(run["epochs"], 1),
            "wall_seconds": run["wall_seconds"],
            "resumed_seconds": run["resumed_seconds"],
            "test_ms_per_user": 1000 * test_seconds / len(per_user["users"]),
            "machine": machine_description(run["trainer"].device),
            "stopped_early": run["epochs"] < config_dict["epochs"],
            # the early-stopping metric after each epoch, as the training saw it (a Base record's is DUET's)
            "training_valid_curve": run["valid_curve"],
            # a training started from a trained model (--cloud-from, cloud_first's generator stage): that model's
            # validation before the first epoch, and whether it beat every epoch and is the record's model
            "training_start_valid": run["start_valid_score"],
            "kept_starting_model": run["kept_start"],
            "per_user_file": save_per_user(self.args.out, self.label(name, seed, lr), per_user),
            **({"cloud_stage": cloud_stage_record(run["cloud_stage"], config_dict)} if "cloud_stage" in run else {}),
        }

    def training_model(self, job, seed):
        """``(model, overrides)`` of ``job``'s training: a plain model as RecBole trains it, or a family's DUET."""
        kind, name, _ = job
        if kind == "plain":
            return name, {}
        family = FAMILY_NAMES[kind]
        overrides = {"backbone": name, **FAMILY_TRAINING[family]}
        if self.args.backbones_from:
            plain = ("plain", name, (name,))
            overrides["backbone_checkpoint"] = self.trained_model(self.args.backbones_from, "--backbones-from", plain, seed)
        if self.args.cloud_from and family == "DUET":
            cloud = ("layers", name, (f"Layers-{name}",))
            overrides["cloud_checkpoint"] = self.trained_model(self.args.cloud_from, "--cloud-from", cloud, seed)
        return "DUET", overrides

    def run_job(self, job, seed, learning_rate):
        """Train ``job``'s model once; record each requested member, scored with its own inference settings."""
        kind, backbone, members = job
        model, overrides = self.training_model(job, seed)
        config_dict, run = self.train(job, model, overrides, seed, learning_rate)
        self.keep_model(run, training_name(job), seed, config_dict.get("learning_rate"))
        records = []
        for member in members:
            member_family = split_name(member)[0]
            trainer, as_trained = self.member_trainer(job, seed, learning_rate, member_family, config_dict, run)
            if as_trained:  # its early-stopping validation
                valid = plain_metrics(run["result"]["best_valid_result"])
            else:
                with validation_draws(trainer.config):  # the negatives its training validated on, when fixed
                    valid = plain_metrics(trainer.evaluate(run["data"][1], load_best_model=False))
            entry = self.record(member, backbone, seed, config_dict, {**run, "trainer": trainer}, valid)
            if member != training_name(job) or kind != "plain":
                entry["training"] = training_name(job)
            if member_family in ADAPTATION:
                entry["adaptation"] = ADAPTATION[member_family](trainer.model, run["data"][2]._dataset.inter_feat)
            records.append(entry)
        return records


def cloud_stage_record(stage, config_dict):
    """What a ``training_order: cloud_first`` training's first stage (the cloud model, trained on its own) adds to
    each of its records: the record's epochs and seconds are the generator stage's."""
    return {
        "valid": plain_metrics(stage["result"]["best_valid_result"]),
        "test": plain_metrics(stage["result"]["test_result"]),
        "epochs": stage["epochs"],
        "epoch_seconds": stage["fit_seconds"] / max(stage["epochs"], 1),
        "stopped_early": stage["epochs"] < config_dict["epochs"],
        "training_valid_curve": stage["valid_curve"],
    }


def machine_description(device):
    """Where a training ran, kept in its record: one results folder may hold runs from this CPU and from a GPU,
    and seconds are only comparable between runs of one machine (on a CPU, with the same allocator setting:
    :mod:`recbole_duet.training.allocator`)."""
    if torch.device(device).type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    threads = f"{torch.get_num_threads()} threads" + (", freed memory kept" if freed_memory_kept() else "")
    return f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {threads}"


def load_records(path):
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as file:
        return json.load(file)


def write_json_atomically(path, value):
    temporary = path + ".tmp"
    with open(temporary, "w", encoding="utf-8") as file:
        json.dump(value, file, indent=2)
    os.replace(temporary, path)


def append_records(path, new_records):
    """Append to ``results.json``, re-read under a lock: harness processes with different ``--models`` may share
    one output folder (e.g. the baselines on one core, the DUET families on the other)."""
    with open(path + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        records = load_records(path) + new_records
        write_json_atomically(path, records)
    return records


def training_jobs(models):
    """The trainings behind ``models``: ``(kind, name, members)``, one per plain model and per family and backbone
    (kind ``plain``, ``duet`` or ``layers``), the plain ones first; a family that trains as its backbone
    (:func:`trains_as_backbone`) joins the backbone's plain training."""
    trainings = {}
    for name in models:
        member, backbone = split_name(name)
        if member is None:
            key = ("plain", name)
        elif trains_as_backbone(FAMILY_OF[member], backbone):
            key = ("plain", backbone)
        else:
            key = (FAMILY_OF[member].lower(), backbone)
        trainings.setdefault(key, []).append(name)
    ordered = sorted(trainings.items(), key=lambda item: item[0][0] != "plain")  # stable: otherwise as asked
    return [(kind, name, tuple(members)) for (kind, name), members in ordered]


def training_name(job):
    """``GRU4Rec``, ``Layers-GRU4Rec`` or ``DUET-GRU4Rec``: the training behind a job (its family's model)."""
    kind, name, _ = job
    return name if kind == "plain" else f"{FAMILY_NAMES[kind]}-{name}"


def chosen_learning_rate(job, records, dataset, first_seed):
    """The grid rate whose first-seed run had the best valid NDCG@10 (the trained member decides for its family)."""
    kind, name, members = job
    for decider in [training_name(job)] + list(members):
        runs = [r for r in records if (r["dataset"], r["model"], r["seed"]) == (dataset, decider, first_seed)]
        if runs:
            return max(runs, key=lambda r: r["valid"]["ndcg@10"])["learning_rate"]
    raise RuntimeError(f"no first-seed run of {'/'.join(members)} to choose a learning rate from")


def pending_jobs(models, seeds, dataset, records, lr_grid):
    """``(job, seed, learning_rate)`` still to run, each job naming only its members not yet recorded (a family
    member added later retrains its family, same seed, and records just itself); ``learning_rate`` None means the
    suite's rate, or, with a grid, the rate chosen on the first seed."""
    done = {(r["dataset"], r["model"], r["seed"], r.get("learning_rate")) for r in records}
    done_any_rate = {key[:3] for key in done}
    pending = []
    for position, seed in enumerate(seeds):
        for kind, name, members in training_jobs(models):
            if lr_grid and position == 0:
                for lr in lr_grid:
                    missing = tuple(m for m in members if (dataset, m, seed, lr) not in done)
                    pending += [((kind, name, missing), seed, lr)] if missing else []
            else:  # a one-rate grid has nothing to choose: later seeds need not wait for the first
                missing = tuple(m for m in members if (dataset, m, seed) not in done_any_rate)
                rate = lr_grid[0] if lr_grid and len(lr_grid) == 1 else None
                pending += [((kind, name, missing), seed, rate)] if missing else []
    return pending


def plots_available():
    """Whether matplotlib (the ``bench`` extra) imports: checked before the first model trains, not after the last."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print(
            "warning: matplotlib is not installed (pip install 'recbole-duet[bench]'): results.json and results.md "
            "will be written, the plots skipped",
            file=sys.stderr,
            flush=True,
        )
        return False
    return True


def write_report(records, args, plots=True):
    reported = selected_records(records)
    models = reported_models(reported, args.models)
    comparisons = paired_comparisons(reported, args.out)  # the bootstrap is the slow part: once, for text and plot
    table = summary_table(reported, models)
    settings = {**args.protocol, **SUITES[args.suite], **args.overrides}
    rates = f" Learning-rate grid (first seed, chosen on valid NDCG@10): {args.lr_grid}." if args.lr_grid else ""
    lines = [
        f"# {args.dataset}, suite '{args.suite}'",
        "",
        f"Machines: {machines_line(reported)}. Seeds: {sorted({r['seed'] for r in reported})}.{rates}",
        "",
        f"Settings on top of RecBole's and each model's defaults: `{json.dumps(settings)}`",
        "",
        table,
        "",
        epoch_cap_line(reported),
        "",
        *per_user_mean_lines(reported, args.out),
        *paired_lines(comparisons),
        "Side-by-side ratios (same seed, same run):",
        "",
        *ratio_lines(reported),
        "",
    ]
    with open(os.path.join(args.out, "results.md"), "w", encoding="utf-8") as file:
        file.write("\n".join(lines))
    if plots:
        write_plots(reported, models, args.out, comparisons)
    print(table)


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", choices=sorted(SUITES), default="quick")
    parser.add_argument("--protocol", choices=list(PROTOCOLS), default="leave-one-out", help="how the data is split")
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data-path", default=None)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--only-seeds", nargs="+", type=int, default=None,
        help="run just these of the --seeds (e.g. one seed per process, to spread a folder's seeds over cores)",
    )
    parser.add_argument("--models", nargs="+", default=["SASRec", "DUET-SASRec", "GRU4Rec", "DUET-GRU4Rec"])
    parser.add_argument("--config-files", nargs="*", default=[], help="yaml overrides applied to every model")
    parser.add_argument(
        "--lr-grid", nargs="*", type=float, default=None, help="learning rates tried on the first seed (default: the suite's)"
    )
    parser.add_argument(
        "--backbones-from", default=None, help="a results folder whose plain runs start each family's backbone"
    )
    parser.add_argument(
        "--cloud-from", default=None, help="a results folder whose Layers runs are each DUET family's fixed cloud model"
    )
    parser.add_argument("--out", required=True)
    return parser


def read_config_files(paths):
    """``(path, settings)`` of each config file, in order (an empty file's settings: ``{}``)."""
    files = []
    for path in paths:
        with open(path, encoding="utf-8") as file:
            files.append((path, yaml.safe_load(file) or {}))
    return files


def parse_args():
    args = build_parser().parse_args()
    if args.lr_grid is None:
        args.lr_grid = SUITE_LR_GRIDS.get(args.suite, [])
    args.overrides = {}
    files = read_config_files(args.config_files)
    for _, settings in files:
        args.overrides.update(settings)
    args.overrides.pop("eval_args", None)
    try:
        args.protocol = {**PROTOCOL, "eval_args": protocol_eval_args(args.protocol, files)}
    except ValueError as error:
        sys.exit(f"error: {error}")
    sys.argv = sys.argv[:1]  # RecBole's Config would read our flags as config overrides
    return args


def main():
    args = parse_args()
    keep_freed_memory()
    os.makedirs(args.out, exist_ok=True)
    results_path = os.path.join(args.out, "results.json")
    records = load_records(results_path)
    seeds = [FIRST_SEED + i for i in range(args.seeds)]
    if args.only_seeds and not set(args.only_seeds) <= set(seeds):
        sys.exit(f"--only-seeds {args.only_seeds}: not among the --seeds {args.seeds} ({seeds})")
    jobs = pending_jobs(args.models, seeds, args.dataset, records, args.lr_grid)
    jobs = [(job, seed, rate) for job, seed, rate in jobs if not args.only_seeds or seed in args.only_seeds]
    plots = plots_available()
    print(f"{len(jobs)} training runs to do, results in {results_path}", flush=True)
    harness = Harness(args)
    for position, (job, seed, learning_rate) in enumerate(jobs, start=1):
        if learning_rate is None and args.lr_grid:
            learning_rate = chosen_learning_rate(job, records, args.dataset, seeds[0])
        rate = "" if learning_rate is None else f", learning rate {learning_rate}"
        print(f"[{position}/{len(jobs)}] {'/'.join(job[2])}, seed {seed}{rate}", flush=True)
        records = append_records(results_path, harness.run_job(job, seed, learning_rate))
        state_file = harness.state_file(job, seed, learning_rate)
        for path in (state_file, cloud_state_file(state_file)):  # a cloud_first training keeps two
            if os.path.exists(path):  # removed only once its records are safe; some trainers keep none
                os.remove(path)
    write_report(records, args, plots)


if __name__ == "__main__":
    main()
