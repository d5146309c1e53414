"""Command line of ``run_recbole_duet.py`` (also installed as ``recbole-duet``), shaped like RecBole's
``run_recbole.py``: ``-m/--model``, ``-d/--dataset``, ``--config_files "a.yaml b.yaml"``, and any
``--key=value`` override, which RecBole's Config reads from ``sys.argv`` itself."""

import argparse
import sys

from recbole_duet.errors import CheckpointError, ConfigError, DatasetNotFoundError
from recbole_duet.quick_start import run_recbole_duet


def build_parser():
    parser = argparse.ArgumentParser(
        description="Train and test DUET (or any RecBole model) with RecBole's data, samplers and evaluator.",
        epilog="Any other --key=value pair overrides that config key, e.g. --backbone=GRU4Rec --epochs=1.",
    )
    parser.add_argument("--model", "-m", default=None, help="DUET (default) or any RecBole model name")
    parser.add_argument("--dataset", "-d", default=None, help="dataset name (default: ml-100k)")
    parser.add_argument("--config_files", default=None, help='space-separated yaml files, e.g. "a.yaml b.yaml"')
    return parser


def main(argv=None):
    args, _ = build_parser().parse_known_args(sys.argv[1:] if argv is None else argv)
    config_file_list = args.config_files.strip().split(" ") if args.config_files else None
    try:
        run_recbole_duet(model=args.model, dataset=args.dataset, config_file_list=config_file_list)
    except (ConfigError, DatasetNotFoundError, CheckpointError) as error:
        sys.exit(f"error: {error}")
