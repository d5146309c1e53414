"""Command line of ``run_recbole_duet.py`` (also installed as ``recbole-duet``), shaped like RecBole's
``run_recbole.py``: ``-m/--model``, ``-d/--dataset``, ``--config_files "a.yaml b.yaml"``, the distributed
flags, and any ``--key=value`` override, which RecBole's Config reads from ``sys.argv`` itself."""

import argparse
import sys

from recbole_duet.errors import CheckpointError, ConfigError, DatasetNotFoundError
from recbole_duet.quick_start import run

USER_ERRORS = (ConfigError, DatasetNotFoundError, CheckpointError)


def _add_experiment_arguments(parser):
    parser.add_argument("--model", "-m", default=None, help="DUET (default) or any RecBole model name")
    parser.add_argument("--dataset", "-d", default=None, help="dataset name (default: ml-100k)")
    parser.add_argument("--config_files", default=None, help='space-separated yaml files, e.g. "a.yaml b.yaml"')


def build_parser():
    parser = argparse.ArgumentParser(
        description="Train and test DUET (or any RecBole model) with RecBole's data, samplers and evaluator.",
        epilog="Any other --key=value pair overrides that config key, e.g. --backbone=GRU4Rec --epochs=1.",
    )
    _add_experiment_arguments(parser)
    distributed = parser.add_argument_group("distributed training (gloo on CPU, NCCL on GPUs)")
    distributed.add_argument("--nproc", type=int, default=1, help="number of processes on this machine")
    distributed.add_argument("--world_size", type=int, default=-1, help="processes on all machines (default: nproc)")
    distributed.add_argument("--ip", default="localhost", help="address of the machine running rank 0")
    distributed.add_argument("--port", default="5678", help="free port on the machine running rank 0")
    distributed.add_argument("--group_offset", type=int, default=0, help="rank of this machine's first process")
    return parser


def _config_file_list(args):
    return args.config_files.strip().split(" ") if args.config_files else None


def main(argv=None):
    args, _ = build_parser().parse_known_args(sys.argv[1:] if argv is None else argv)
    try:
        run(
            model=args.model,
            dataset=args.dataset,
            config_file_list=_config_file_list(args),
            nproc=args.nproc,
            world_size=args.world_size,
            ip=args.ip,
            port=args.port,
            group_offset=args.group_offset,
        )
    except USER_ERRORS as error:
        sys.exit(f"error: {error}")
