"""One trained model's validation timed under several settings of the same computation, in one process, rounds
alternating, with a check that every setting scores as the first one does (``din_attention_chunks``,
``sampled_eval_rows``).

Every validation draws the same sampled negatives (numpy seeded), so the metrics of two settings are comparable
to the digit, and the first batches' scores are kept to show how far the settings differ in float rounding.
"""

import os
import platform
import statistics
import sys
import time

import torch

from benchmarks.din_uni100_scoring import CONFIGS_DIR, quick_sampled_config
from benchmarks.run import write_json_atomically
from recbole_duet.config import Config
from recbole_duet.quick_start import run_experiment
from recbole_duet.training.sampled_validation import numpy_seeded

SCORED_BATCHES = 5


def parse_timing_arguments(parser, config_file):
    """Add the flags every timing script shares to ``parser`` (its own flags already added) and parse them; RecBole's
    Config would read them as config overrides, so they leave ``sys.argv``."""
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--epochs", type=int, default=1, help="training epochs before timing")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--config-files", nargs="+", default=[os.path.join(CONFIGS_DIR, config_file)], help="later files win"
    )
    parser.add_argument("--data-path", help="RecBole's data_path, for a dataset outside the recbole wheel")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    sys.argv = sys.argv[:1]
    return args


def train_for_timing(args, backbone):
    """``args.model`` (DUET on ``backbone``, or a RecBole model) trained ``args.epochs`` quick epochs under
    ``args.config_files``; returns the config overrides it trained with and the run (:func:`run_experiment`'s)."""
    config_dict = quick_sampled_config(args.config_files, args.epochs, backbone)
    if args.model != "DUET":
        del config_dict["backbone"]
    if args.data_path:
        config_dict["data_path"] = args.data_path
    run = run_experiment(Config(model=args.model, dataset=args.dataset, config_dict=config_dict), saved=False)
    return config_dict, run


@torch.no_grad()
def first_scores(model, eval_data):
    """The model's scores on the first batches of ``eval_data``, negatives drawn as in every validation here."""
    scores = []
    with numpy_seeded(0):
        for batch_index, (interaction, *_) in enumerate(eval_data):
            if batch_index == SCORED_BATCHES:
                break
            scores.append(model.predict(interaction))
    return torch.cat(scores)


def time_settings(trainer, valid_data, settings, rounds):
    """Validate ``rounds`` times under each of ``settings`` (label -> a function that switches it on).

    Returns:
        dict: per label (as a string), the seconds of each round, their median, the speed-up over the first
        setting's median, the largest score difference to the first setting and whether the metrics are equal.
    """
    seconds = {label: [] for label in settings}
    metrics, scores = {}, {}
    for _ in range(rounds):
        for label, switch_on in settings.items():
            switch_on()
            with numpy_seeded(0):
                start = time.perf_counter()
                result = trainer.evaluate(valid_data, load_best_model=False, show_progress=False)
                seconds[label].append(time.perf_counter() - start)
            metrics[label] = {key: float(value) for key, value in result.items()}
            scores[label] = first_scores(trainer.model, valid_data)
    reference = next(iter(settings))
    reference_seconds = statistics.median(seconds[reference])
    return {
        str(label): {
            "seconds": seconds[label],
            "median_seconds": statistics.median(seconds[label]),
            "speedup": reference_seconds / statistics.median(seconds[label]),
            "max_score_difference": float((scores[label] - scores[reference]).abs().max()),
            "same_metrics": metrics[label] == metrics[reference],
            "valid": metrics[label],
        }
        for label in settings
    }


def machine():
    """The machine and torch's threads, for a result's record."""
    return f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"


def write_and_print(out, record, cases, setting_column, label=str):
    """Write ``record`` to ``<out>/results.json`` and print its settings as a table, each labelled by ``label``."""
    os.makedirs(out, exist_ok=True)
    write_json_atomically(os.path.join(out, "results.json"), record)
    print(f"{record['model']}, {record['dataset']}: {cases} validation cases x 101 rows, {record['rounds']} rounds")
    print(f"| {setting_column} | median seconds | speed-up | max score difference | same metrics |")
    print("|---|---|---|---|---|")
    for setting, row in record["settings"].items():
        print(
            f"| {label(setting)} | {row['median_seconds']:.2f} | {row['speedup']:.2f}x | "
            f"{row['max_score_difference']:.1e} | {row['same_metrics']} |"
        )
