"""RecBole's quick-start functions for the plugin (which must not import recbole.quick_start: that module
imports ray, which breaks on numpy 2): ``run_recbole_duet`` (RecBole's ``run_recbole``), ``run`` (one process
or a distributed run), ``objective_function`` (one trial of a hyper-parameter search)."""

import os
import sys
import time
from logging import getLogger

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from recbole.data import create_dataset, data_preparation
from recbole.utils import get_environment, init_seed, set_color

from recbole_duet.config import Config
from recbole_duet.data import ensure_dataset_files
from recbole_duet.model.device_rows import deduplicate_forward_rows
from recbole_duet.training.cloud_first import (
    cloud_stage_config,
    cloud_state_file,
    generator_stage_config,
    trains_cloud_first,
)
from recbole_duet.training.run_log import init_run_logger, plain_metrics
from recbole_duet.training.starting_model import StartingModel, has_nothing_to_train, starts_from_trained_model
from recbole_duet.training.state import (
    keeps_training_state,
    resume_training_state,
    save_training_state,
    training_finished,
)
from recbole_duet.training.trainer import get_trainer


def run_recbole_duet(model=None, dataset=None, config_file_list=None, config_dict=None, saved=True, queue=None):
    r"""Train, early-stop on the validation set, reload the best checkpoint and test one model (DUET at its default
    ``training_order: cloud_first``: its cloud model, then the generator on it, see :func:`run_experiment`).

    With ``local_rank`` (and RecBole's ``world_size``, ``ip``, ``port``, ``offset``) in the config this is one
    process of a distributed run, as :func:`run` starts them.

    Args:
        model (str or class, optional): ``"DUET"`` (default) or any RecBole model name.
        dataset (str, optional): dataset name; defaults to the ml-100k shipped inside the recbole wheel.
        config_file_list (list of str, optional): yaml files with config overrides.
        config_dict (dict, optional): config overrides (command-line ``--key=value`` pairs win over it).
        saved (bool): whether to checkpoint the best model and test that checkpoint.
        queue (SimpleQueue, optional): where a distributed run's process with ``local_rank`` 0 puts the result.

    Returns:
        dict: ``best_valid_score``, ``valid_score_bigger``, ``best_valid_result`` and ``test_result``.
    """
    config = Config(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict)
    result = run_experiment(config, saved=saved)["result"]
    if not config["single_spec"]:
        dist.destroy_process_group()
    if config["local_rank"] == 0 and queue is not None:
        queue.put(result)
    return result


def run(
    model=None,
    dataset=None,
    config_file_list=None,
    config_dict=None,
    saved=True,
    nproc=1,
    world_size=-1,
    ip="localhost",
    port="5678",
    group_offset=0,
):
    r"""RecBole's ``run``: :func:`run_recbole_duet` in this process, or ``nproc`` processes of a distributed run.

    A run is distributed when ``nproc > 1`` or ``world_size > 0``. This machine starts ``nproc`` processes with
    ranks ``group_offset`` to ``group_offset + nproc - 1`` of ``world_size`` (default ``nproc``), which meet at
    ``tcp://ip:port``; on several machines, start it on each with its own ``group_offset``. Before starting
    them, the config is checked (bad keys fail here, not in every process) and the dataset fetched.

    Returns:
        dict: as :func:`run_recbole_duet`, from this machine's process with ``local_rank`` 0.
    """
    if nproc == 1 and world_size <= 0:
        return run_recbole_duet(model, dataset, config_file_list, config_dict, saved)
    config_dict = {
        **(config_dict or {}),
        "world_size": world_size if world_size > 0 else nproc,
        "ip": ip,
        "port": port,
        "nproc": nproc,
        "offset": group_offset,
    }
    config = Config(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict)
    ensure_dataset_files(config)
    # A spawn-context queue: see https://discuss.pytorch.org/t/return-from-mp-spawn/94302/2
    queue = mp.get_context("spawn").SimpleQueue()
    mp.spawn(
        run_recbole_duets,
        args=(model, dataset, config_file_list, config_dict, saved, queue),
        nprocs=nproc,
        join=True,
    )
    return None if queue.empty() else queue.get()


def run_recbole_duets(rank, model, dataset, config_file_list, config_dict, saved, queue):
    """One process of a distributed run (what :func:`run` spawns): :func:`run_recbole_duet` as ``local_rank``.

    Unless ``OMP_NUM_THREADS`` is set, the processes share the machine's cores out (torchrun sets one thread
    each): with torch's default of a thread per core in every process, their OpenMP threads wait on each other
    and a 2-process epoch on 2 busy cores took over 20 times as long as with one thread each.
    """
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, torch.get_num_threads() // config_dict["nproc"]))
    run_recbole_duet(model, dataset, config_file_list, {**config_dict, "local_rank": rank}, saved, queue)


def objective_function(config_dict=None, config_file_list=None, saved=True, model=None, dataset=None):
    r"""RecBole's ``objective_function`` for :class:`recbole_duet.search.hyper_tuning.HyperTuning`: one trial.

    ``config_dict`` holds the trial's parameters. Each trial logs to a file of its own, as in RecBole.

    Returns:
        dict: ``model`` and what :func:`run_recbole_duet` returns.
    """
    config = Config(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict)
    return {"model": config["model"], **run_experiment(config, saved=saved)["result"]}


def _make_output_folders(config):
    """Create the folders RecBole writes logs and checkpoints to: its ``ensure_dir`` checks, then creates, so the
    processes of a distributed run, starting together, race on it and one dies with FileExistsError."""
    for folder in (os.path.join("log", config["model"]), config["checkpoint_dir"]):
        os.makedirs(folder, exist_ok=True)


def prepare_experiment(config):
    """RecBole's data pipeline for ``config`` and a freshly initialised model, seeded as RecBole seeds them (or,
    when its class declares that ``config`` starts from a trained model, that model, loaded).

    It also sets autograd's anomaly mode from ``detect_anomaly`` (off unless asked for): RecBole switches it on
    for the whole process when its sequential models are imported, and it slows training by up to half.

    Returns:
        tuple: the filtered dataset, its (train, valid, test) loaders, and the model on ``config['device']``.
    """
    torch.autograd.set_detect_anomaly(config["detect_anomaly"])
    init_seed(config["seed"], config["reproducibility"])
    ensure_dataset_files(config)
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    return dataset, (train_data, valid_data, test_data), build_model(config, train_data._dataset)


def build_model(config, dataset):
    """``config``'s model on ``dataset`` (the training set's) and ``config['device']``: freshly initialised, seeded as
    RecBole seeds it, or, when its class declares that ``config`` starts from a trained model, that model, loaded.
    Its ``forward`` encodes each distinct history once when evaluating (:func:`deduplicate_forward_rows`)."""
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = config.model_class(config, dataset)
    if starts_from_trained_model(config):
        model.load_starting_model(config)
    return deduplicate_forward_rows(model).to(config["device"])


def run_experiment(config, saved=True, state_file=None, epoch_callback=None):
    """Run one experiment from a built :class:`Config`; also return the trainer and the training time.

    With ``training_order: cloud_first`` (:mod:`recbole_duet.training.cloud_first`) DUET's experiment is two
    trainings, the cloud model's and then the generator's on it, logged to one file; what is returned is the
    generator stage's, with the cloud stage's own under ``cloud_stage``.
    A model whose class declares it has nothing to train (the fine-tuning baseline, ``model: Finetune``) is
    validated and tested as loaded: no epoch, and its result is the starting model.

    Args:
        state_file (str, optional): a training-state file (:mod:`recbole_duet.training.state`) written after
            every validated epoch; when it exists, the training resumes from it (a finished one only re-tests
            its best checkpoint). Needs ``saved``; ignored, with a warning, by trainers with their own loop. A
            cloud stage keeps its state next to it, in ``cloud-<name>``.
        epoch_callback (callable, optional): called with ``(epoch, valid_score)`` after every validated epoch (of
            both stages of a cloud_first training); an exception it raises ends the training there (a search's
            pruner does this).

    Returns:
        dict: ``result`` (what :func:`run_recbole_duet` returns), ``trainer`` (holding the best model),
        ``data`` (train, valid and test loaders), ``fit_seconds`` (training plus per-epoch validation, earlier
        sessions' included), ``resumed_seconds`` (the part of it spent before this call), ``epochs``
        (epochs trained), ``valid_curve`` (``valid_metric`` after each epoch; None where an epoch was not
        validated, or was validated before a resume from a state file that did not keep the scores),
        ``start_valid_score`` (a model started from a trained model: that model's, validated before the first
        epoch; else None) and ``kept_start`` (whether it validated above every epoch and is the result,
        :mod:`recbole_duet.training.starting_model`); after a cloud stage, ``cloud_stage``: the same keys for it, less
        ``trainer`` and ``data``.
    """
    if state_file is not None and not saved:
        raise ValueError("run_experiment: a state_file needs saved=True (a resumed training tests its best checkpoint)")
    _make_output_folders(config)
    init_run_logger(config)
    logger = getLogger()
    logger.info(training_budget_line(config))
    logger.info(sys.argv)
    logger.info(config)
    if not trains_cloud_first(config):
        return _train_and_test(config, saved, state_file, epoch_callback)

    logger.info(set_color("training_order cloud_first", "green") + ": the cloud model (backbone + global layers) first")
    cloud_config = cloud_stage_config(config)
    _make_output_folders(cloud_config)
    cloud = _train_and_test(cloud_config, True, cloud_state_file(state_file), epoch_callback)
    generator_config = generator_stage_config(config, cloud["trainer"])
    logger.info(set_color("training_order cloud_first", "green") + f": the generator on {generator_config['cloud_checkpoint']}")
    run = _train_and_test(generator_config, saved, state_file, epoch_callback)
    run["cloud_stage"] = {key: value for key, value in cloud.items() if key not in ("trainer", "data")}
    return run


def training_budget_line(config):
    """What the run is about to do, first in its log: RecBole's default budget is 300 epochs, which a newcomer
    starting ``run_recbole_duet.py`` without arguments would not expect."""
    backbone = config.final_config_dict.get("backbone")
    model = config["model"] + (f"({backbone})" if backbone else "")
    return (
        f"{model} on {config['dataset']}: up to {config['epochs']} epochs, stopping after {config['stopping_step']} "
        f"without a better valid {config['valid_metric']} (--epochs=N and --stopping_step=N change them)"
    )


def checks_starting_model(config, valid_data, trainer):
    """Whether the trained model a training starts from is validated before the first epoch, to be kept if no epoch
    validates above it (:mod:`recbole_duet.training.starting_model`)."""
    return starts_from_trained_model(config) and bool(valid_data) and trainer.eval_step > 0


def _train_and_test(config, saved, state_file, epoch_callback=None):
    """One training with early stopping, then the test of its best model (see :func:`run_experiment`)."""
    logger = getLogger()
    dataset, (train_data, valid_data, test_data), model = prepare_experiment(config)
    logger.info(dataset)
    logger.info(model)

    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    if state_file is not None and not keeps_training_state(trainer):
        logger.warning(f"{type(trainer).__name__} has its own training loop: no per-epoch training state is kept")
        state_file = None
    as_loaded = has_nothing_to_train(config)
    starting_model = None
    if as_loaded or checks_starting_model(config, valid_data, trainer):
        starting_model = StartingModel(trainer, train_data, valid_data, config["show_progress"])
    resumed_seconds, valid_scores = 0.0, {}
    if state_file is not None and os.path.isfile(state_file) and not as_loaded:
        resumed_seconds, valid_scores = resume_training_state(trainer, train_data, state_file)
        logger.info(f"Resuming from training state '{state_file}' after epoch {trainer.start_epoch - 1}")
    fit_start = time.perf_counter()

    def after_validation(epoch, valid_score):
        """Keep every validated epoch's score (RecBole keeps the best one only) and, with a state file, the state."""
        valid_scores[epoch] = float(valid_score)
        if state_file is not None:
            seconds = resumed_seconds + time.perf_counter() - fit_start
            save_training_state(trainer, train_data, state_file, epoch, seconds, valid_scores)
        if epoch_callback is not None:
            epoch_callback(epoch, float(valid_score))

    if as_loaded:  # validated as the starting model, which is kept below: no epoch competes with it
        best_valid_score, best_valid_result = starting_model.valid_score, starting_model.valid_result
    elif state_file is not None and training_finished(trainer):
        trainer.eval_collector.data_collect(train_data)  # what fit does first, for metrics that count training items
        best_valid_score, best_valid_result = trainer.best_valid_score, trainer.best_valid_result
    else:
        best_valid_score, best_valid_result = trainer.fit(
            train_data,
            valid_data,
            saved=saved,
            show_progress=config["show_progress"],
            callback_fn=after_validation,
        )
    kept_start = starting_model is not None and starting_model.keep_if_better(trainer, saved)
    if kept_start and as_loaded:
        logger.info(set_color("nothing to train", "green") + ": the model as loaded is validated and tested")
    elif kept_start:
        best_valid_score, best_valid_result = trainer.best_valid_score, trainer.best_valid_result
        logger.info(
            set_color("starting model kept", "green")
            + f": no epoch validated above the model the training started from ({best_valid_score:.4f})"
        )
    fit_seconds = resumed_seconds + time.perf_counter() - fit_start
    test_result = trainer.evaluate(test_data, load_best_model=saved, show_progress=config["show_progress"])
    best_valid_score = float(best_valid_score)
    best_valid_result, test_result = plain_metrics(best_valid_result), plain_metrics(test_result)

    logger.info("The running environment of this training is as follows:\n" + get_environment(config).draw())
    logger.info(set_color("best valid ", "yellow") + f": {best_valid_result}")
    logger.info(set_color("test result", "yellow") + f": {test_result}")
    result = {
        "best_valid_score": best_valid_score,
        "valid_score_bigger": config["valid_metric_bigger"],
        "best_valid_result": best_valid_result,
        "test_result": test_result,
    }
    return {
        "result": result,
        "trainer": trainer,
        "data": (train_data, valid_data, test_data),
        "fit_seconds": fit_seconds,
        "resumed_seconds": resumed_seconds,
        "epochs": len(trainer.train_loss_dict),
        "valid_curve": [valid_scores.get(epoch) for epoch in range(len(trainer.train_loss_dict))],
        "start_valid_score": None if starting_model is None else starting_model.valid_score,
        "kept_start": kept_start,
    }
