"""``run_recbole_duet``: RecBole's ``run_recbole`` for the plugin (which must not import recbole.quick_start:
that module imports ray, which breaks on numpy 2)."""

import sys
import time
from logging import getLogger

from recbole.data import create_dataset, data_preparation
from recbole.utils import get_environment, init_logger, init_seed, set_color

from recbole_duet.config import Config
from recbole_duet.data import ensure_dataset_files
from recbole_duet.trainer import get_trainer


def run_recbole_duet(model=None, dataset=None, config_file_list=None, config_dict=None, saved=True):
    r"""Train, early-stop on the validation set, reload the best checkpoint and test one model.

    Args:
        model (str or class, optional): ``"DUET"`` (default) or any RecBole model name.
        dataset (str, optional): dataset name; defaults to the ml-100k shipped inside the recbole wheel.
        config_file_list (list of str, optional): yaml files with config overrides.
        config_dict (dict, optional): config overrides (command-line ``--key=value`` pairs win over it).
        saved (bool): whether to checkpoint the best model and test that checkpoint.

    Returns:
        dict: ``best_valid_score``, ``valid_score_bigger``, ``best_valid_result`` and ``test_result``.
    """
    config = Config(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict)
    return run_experiment(config, saved=saved)["result"]


def run_experiment(config, saved=True):
    """Run one experiment from a built :class:`Config`; also return the trainer and the training time.

    Returns:
        dict: ``result`` (what :func:`run_recbole_duet` returns), ``trainer`` (holding the best model),
        ``data`` (train, valid and test loaders), ``fit_seconds`` (training plus per-epoch validation) and
        ``epochs`` (epochs trained).
    """
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    logger = getLogger()
    logger.info(sys.argv)
    logger.info(config)

    ensure_dataset_files(config)
    dataset = create_dataset(config)
    logger.info(dataset)
    train_data, valid_data, test_data = data_preparation(config, dataset)

    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = config.model_class(config, train_data._dataset).to(config["device"])
    logger.info(model)

    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    fit_start = time.perf_counter()
    best_valid_score, best_valid_result = trainer.fit(
        train_data, valid_data, saved=saved, show_progress=config["show_progress"]
    )
    fit_seconds = time.perf_counter() - fit_start
    test_result = trainer.evaluate(test_data, load_best_model=saved, show_progress=config["show_progress"])

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
        "epochs": len(trainer.train_loss_dict),
    }
