"""Command lines of ``run_recbole_duet.py`` (installed as ``recbole-duet``) and ``run_hyper.py`` (installed as
``recbole-duet-hyper``), shaped like RecBole's ``run_recbole.py`` and ``run_hyper.py``: ``-m/--model``,
``-d/--dataset``, ``--config_files "a.yaml b.yaml"``, and any ``--key=value`` override, which RecBole's Config
reads from ``sys.argv`` itself. ``recbole-duet export`` and ``recbole-duet serve`` are the deployment
subcommands (:mod:`recbole_duet.deploy.cli`); torch and RecBole are imported only by the commands that use
them, so ``serve`` starts without them."""

import argparse
import os
import sys
from functools import partial

from recbole_duet.errors import (
    CheckpointError,
    ConfigError,
    ConfigFileError,
    DatasetNotFoundError,
    MissingDependencyError,
)
from recbole_duet.search.choices import PRUNERS, SAMPLERS

USER_ERRORS = (ConfigError, ConfigFileError, DatasetNotFoundError, CheckpointError, MissingDependencyError)


def _add_experiment_arguments(parser):
    parser.add_argument("--model", "-m", default=None, help="DUET (default) or any RecBole model name")
    parser.add_argument("--dataset", "-d", default=None, help="dataset name (default: ml-100k)")
    parser.add_argument("--config_files", default=None, help='space-separated yaml files, e.g. "a.yaml b.yaml"')


def build_parser():
    parser = argparse.ArgumentParser(
        description="Train and test DUET (or any RecBole model) with RecBole's data, samplers and evaluator.",
        epilog="Any other --key=value pair overrides that config key, e.g. --backbone=GRU4Rec --epochs=1. "
        "Deployment: 'recbole-duet export --help' (a trained DUET to a bundle) and 'recbole-duet serve --help' "
        "(a generation service for a bundle).",
    )
    _add_experiment_arguments(parser)
    distributed = parser.add_argument_group("distributed training (gloo on CPU, NCCL on GPUs)")
    distributed.add_argument("--nproc", type=int, default=1, help="number of processes on this machine")
    distributed.add_argument("--world_size", type=int, default=-1, help="processes on all machines (default: nproc)")
    distributed.add_argument("--ip", default="localhost", help="address of the machine running rank 0")
    distributed.add_argument("--port", default="5678", help="free port on the machine running rank 0")
    distributed.add_argument("--group_offset", type=int, default=0, help="rank of this machine's first process")
    return parser


def build_hyper_parser():
    parser = argparse.ArgumentParser(
        description="Hyper-parameter search (RecBole's HyperTuning with hyperopt) for DUET or any RecBole model.",
        epilog="Any other --key=value pair overrides that config key in every trial.",
    )
    _add_experiment_arguments(parser)
    parser.add_argument(
        "--params_file",
        default="hyper.test",
        help="search space, one 'name type values' line per key; a name not found here is looked up among the "
        "plugin's shipped examples (default: hyper.test)",
    )
    parser.add_argument("--output_file", default="hyper_example.result", help="where every trial's results go")
    parser.add_argument(
        "--algo",
        choices=["exhaustive", "random", "bayes"],
        default="exhaustive",
        help="exhaustive: every point of a grid of 'choice' keys (default); random / bayes: --max_evals draws",
    )
    parser.add_argument("--max_evals", type=int, default=100, help="trials of a random or bayes search")
    parser.add_argument("--early_stop", type=int, default=10, help="stop after this many trials without progress")
    optuna_options = parser.add_argument_group("--engine optuna: a study in a database, several workers, pruning")
    optuna_options.add_argument("--engine", choices=["hyperopt", "optuna"], default="hyperopt")
    optuna_options.add_argument(
        "--storage", default="sqlite:///recbole-duet-optuna.db",
        help="SQLAlchemy URL of the study's database (default: a SQLite file here; PostgreSQL to share machines)",
    )
    optuna_options.add_argument("--study-name", default=None, help="default: <model>-<dataset>-<params file name>")
    optuna_options.add_argument("--n-trials", type=int, default=100, help="trials of a tpe or random study")
    optuna_options.add_argument("--workers", type=int, default=1, help="processes on this machine sharing the study")
    optuna_options.add_argument("--sampler", choices=SAMPLERS, default=None,
                                help="default: grid when every parameter is a choice, else tpe")
    optuna_options.add_argument("--pruner", choices=PRUNERS, default="median")
    optuna_options.add_argument(
        "--tie-margin", type=_non_negative_float, default=0.0,
        help="also name the simplest setting (each choice's first value) less than this behind the best on "
        "validation: a margin below the noise is a tie (default: 0, the best only)",
    )
    return parser


def _non_negative_float(text):
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got '{text}'")
    return value


def _config_file_list(args):
    return args.config_files.strip().split(" ") if args.config_files else None


def _params_file(parser, name):
    """``name`` as given, or the plugin's shipped example of that name (``properties/hyper.test``)."""
    from recbole_duet.config import properties_dir

    if os.path.isfile(name):
        return name
    shipped = os.path.join(properties_dir(), os.path.basename(name))
    if os.path.isfile(shipped):
        return shipped
    parser.error(f"--params_file '{name}' does not exist (the plugin ships an example: 'hyper.test')")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("export", "serve"):
        from recbole_duet.deploy.cli import deploy_main

        return deploy_main(argv)
    from recbole_duet.quick_start import run
    from recbole_duet.training.allocator import keep_freed_memory

    args, _ = build_parser().parse_known_args(argv)
    keep_freed_memory()
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


def _optuna_search(args, params_file):
    """``--engine optuna``: join or create the study, run ``--workers`` processes on it, write the result file."""
    from recbole_duet.search import optuna_search  # needs optuna: pip install "recbole-duet[hyper]"

    try:
        study = optuna_search.search(
            args.model, args.dataset, _config_file_list(args), params_file, args.storage,
            study_name=args.study_name, sampler_name=args.sampler,
            pruner_name=args.pruner, n_trials=args.n_trials, workers=args.workers,
        )
    except (*USER_ERRORS, ValueError) as error:
        sys.exit(f"error: {error}")
    space = optuna_search.read_search_space(params_file)
    chosen = optuna_search.export_result(study, args.output_file, space, args.tie_margin)
    print(f"study '{study.study_name}' in {args.storage} (optuna-dashboard {args.storage} shows it)")
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    if complete:
        print("best params: ", study.best_trial.params)
        print("best valid score: ", study.best_value)
    if chosen:
        print(f"chosen params (the simplest within {args.tie_margin} of the best): ", chosen.params)


def hyper_main(argv=None):
    from recbole_duet.quick_start import objective_function
    from recbole_duet.training.allocator import keep_freed_memory
    from recbole_duet.search.hyper_tuning import HyperTuning  # needs hyperopt: pip install "recbole-duet[hyper]"

    parser = build_hyper_parser()
    args, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    params_file = _params_file(parser, args.params_file)
    keep_freed_memory()  # before the optuna engine starts its worker processes, which inherit it
    if args.engine == "optuna":
        return _optuna_search(args, params_file)
    try:
        tuner = HyperTuning(
            partial(objective_function, model=args.model, dataset=args.dataset),
            params_file=params_file,
            fixed_config_file_list=_config_file_list(args),
            algo=args.algo,
            max_evals=args.max_evals,
            early_stop=args.early_stop,
        )
        tuner.run()
    except USER_ERRORS as error:
        sys.exit(f"error: {error}")
    tuner.export_result(output_file=args.output_file)
    print("best params: ", tuner.best_params)
    print("best result: ")
    print(tuner.params2result[tuner.params2str(tuner.best_params)])
