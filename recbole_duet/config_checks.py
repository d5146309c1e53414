"""Checks of the keys a user passes that RecBole itself would take on trust.

RecBole accepts any key: a misspelled one (``--realtime_windw=5``) is silently ignored, and a training key of the
wrong type (``--epochs=abc``) ends in a traceback from deep inside its trainer, while ``--epochs=0`` trains
nothing and reports an untrained model. These checks run when the plugin's Config is built.
"""

import functools
import glob
import os
from logging import getLogger

import yaml

from recbole_duet.errors import ConfigError
from recbole_duet.model.settings import _integer_at_least, _positive_number

# RecBole's training keys that a run cannot do without, each with the check of the DUET keys it shares, and
# whether it may be null (RecBole leaves a key it has no use for at null).
TRAINING_KEYS = {
    "epochs": (_integer_at_least(1), True),
    "train_batch_size": (_integer_at_least(1), True),
    "eval_batch_size": (_integer_at_least(1), True),
    "MAX_ITEM_LIST_LENGTH": (_integer_at_least(1), True),
    "stopping_step": (_integer_at_least(0), True),  # 0: stop at the first epoch that does not improve
    "learning_rate": (_positive_number(), False),
}
# Keys the command line and the runner read besides the yaml files' (distributed training, data location).
RUNNER_KEYS = (
    "model", "dataset", "config_files", "nproc", "world_size", "ip", "port", "group_offset", "offset",
    # run_hyper.py's own options, which RecBole's Config also sees on the command line
    "params_file", "output_file", "algo", "max_evals", "early_stop", "engine", "storage", "study-name",
    "n-trials", "workers", "sampler", "pruner",
)
MAX_EDIT_DISTANCE = 2


def check_training_keys(config_dict):
    """Raise :class:`ConfigError` for the first of RecBole's training keys whose value it cannot train with."""
    for key, ((is_valid, expected), may_be_null) in TRAINING_KEYS.items():
        if key not in config_dict:
            continue
        value = config_dict[key]
        if not (is_valid(value) or (may_be_null and value is None)):
            raise ConfigError(key, value, expected)


def edit_distance(first, second):
    """Levenshtein distance (insertions, deletions and substitutions each cost 1)."""
    previous = list(range(len(second) + 1))
    for i, a in enumerate(first, start=1):
        current = [i]
        for j, b in enumerate(second, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a != b)))
        previous = current
    return previous[-1]


@functools.lru_cache(maxsize=None)
def known_keys(*folders):
    """Every key of every yaml file under ``folders`` (RecBole's properties and the plugin's)."""
    keys = set(RUNNER_KEYS)
    for folder in folders:
        for path in glob.glob(os.path.join(folder, "**", "*.yaml"), recursive=True):
            with open(path, encoding="utf-8") as file:
                try:
                    content = yaml.safe_load(file)
                except yaml.YAMLError:
                    continue
            if isinstance(content, dict):
                keys.update(str(key) for key in content)
    return frozenset(keys)


def near_misses(user_keys, known):
    """``[(key, closest known key)]`` for each user key that no yaml names but one is within two edits of."""
    misses = []
    for key in user_keys:
        if key in known:
            continue
        distance, closest = min((edit_distance(key, candidate), candidate) for candidate in known)
        if distance <= MAX_EDIT_DISTANCE:
            misses.append((key, closest))
    return misses


def warn_about_near_misses(user_keys, known):
    for key, closest in near_misses(user_keys, known):
        getLogger().warning(f"config key '{key}' is read by neither RecBole nor the plugin: did you mean '{closest}'?")
