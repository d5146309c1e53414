"""Finding a dataset's atomic files before RecBole reads them.

RecBole downloads a missing, known dataset (ml-1m, ...) from inside ``Dataset._load_data``; that path calls
``torch.distributed.barrier()`` even in a single-process run and, without internet, ends in a urllib
traceback. We fetch known datasets here instead, and otherwise stop at once with an error that says which
files to put where.

A process of a distributed run never downloads: :func:`recbole_duet.quick_start.run` fetches the files once on
each machine before it starts the processes, so several ranks never write the same files at once.
"""

import os
import socket
from contextlib import contextmanager
from logging import getLogger

import yaml
from recbole.utils import ModelType
from recbole.utils.url import download_url, extract_zip, rename_atomic_files

from recbole_duet.errors import DatasetNotFoundError
from recbole_duet.model.backbones import recbole_properties_dir

DOWNLOAD_TIMEOUT_S = 30


def known_dataset_url(dataset):
    """The download address RecBole lists for ``dataset``, or None."""
    with open(os.path.join(recbole_properties_dir(), "dataset", "url.yaml"), encoding="utf-8") as file:
        return yaml.safe_load(file).get(dataset)


def _expected_files_message(dataset, data_path):
    return (
        f"Put the atomic files of dataset '{dataset}' into '{data_path}': '{dataset}.inter' (required), "
        f"'{dataset}.item' and '{dataset}.user' (optional), or set data_path to the folder that holds the "
        f"'{dataset}' directory. See https://recbole.io/docs/user_guide/data/atomic_files.html"
    )


@contextmanager
def _socket_timeout(seconds):
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _download(dataset, url, data_path):
    logger = getLogger()
    logger.info(f"Dataset '{dataset}' is not in '{data_path}': downloading it from {url}")
    with _socket_timeout(DOWNLOAD_TIMEOUT_S):
        archive = download_url(url, data_path)
    extract_zip(archive, data_path)
    os.unlink(archive)
    rename_atomic_files(data_path, os.path.splitext(os.path.basename(archive))[0], dataset)


def ensure_dataset_files(config):
    """Make sure the atomic files exist (downloading datasets RecBole knows by name) and hold the columns
    that ``load_col`` asks for: RecBole silently skips a missing column or ``.item`` / ``.user`` file, and a
    model that needs those features (DIN) would then train on less than the user configured.

    Raises:
        DatasetNotFoundError: a file is missing and cannot be downloaded, or lacks a ``load_col`` field.
    """
    if not config["benchmark_filename"]:
        _ensure_inter_file(config)
        _load_time_field_if_needed(config)
    for suffix, fields in (config["load_col"] or {}).items():
        _check_columns(config, suffix, fields)


def _atomic_file_columns(path, separator):
    with open(path, encoding="utf-8") as file:
        header = file.readline().rstrip("\n").split(separator)
    return [column.split(":")[0] for column in header]


def _check_columns(config, suffix, fields):
    if suffix == "inter" and config["benchmark_filename"]:
        return  # interactions are split over <dataset>.<part>.inter files, which RecBole checks itself
    dataset, data_path = config["dataset"], config["data_path"]
    path = os.path.join(data_path, f"{dataset}.{suffix}")
    if not os.path.isfile(path):
        raise DatasetNotFoundError(
            f"load_col['{suffix}'] asks for fields {list(fields)} but '{path}' does not exist. "
            + _expected_files_message(dataset, data_path)
        )
    columns = _atomic_file_columns(path, config["field_separator"])
    missing = [field for field in fields if field not in columns]
    if missing:
        raise DatasetNotFoundError(
            f"Field '{missing[0]}' of load_col['{suffix}'] is not a column of '{path}' "
            f"(its columns: {columns}). Add the column or remove the field from load_col."
        )


def _orders_by_time(config):
    return config["MODEL_TYPE"] == ModelType.SEQUENTIAL or config["eval_args"]["order"] == "TO"


def _load_time_field_if_needed(config):
    """Add ``TIME_FIELD`` to ``load_col['inter']`` when the run orders interactions by time and the file has it.

    RecBole's default ``load_col`` is ``{inter: [user_id, item_id]}``, so on a custom dataset a sequential model
    (or ``order: TO``) dies with "[timestamp] is not exist in interaction", the error RecBole's users report
    most. A file without the column is reported by name, with the columns it has.
    """
    load_col, time_field = config["load_col"], config["TIME_FIELD"]
    inter_fields = (load_col or {}).get("inter")
    if not time_field or inter_fields is None or time_field in inter_fields or not _orders_by_time(config):
        return
    dataset, path = config["dataset"], os.path.join(config["data_path"], f"{config['dataset']}.inter")
    columns = _atomic_file_columns(path, config["field_separator"])
    if time_field not in columns:
        raise DatasetNotFoundError(
            f"Model '{config['model']}' orders each user's interactions by time, but '{path}' has no time column "
            f"'{time_field}' (its columns: {columns}). Add a '{time_field}:float' column, or set TIME_FIELD to "
            "the name of the time column."
        )
    config["load_col"] = {**load_col, "inter": [*inter_fields, time_field]}
    getLogger().info(
        f"load_col['inter'] did not name the time field '{time_field}' that '{dataset}.inter' has and "
        f"model '{config['model']}' orders by: loading it too."
    )


def _ensure_inter_file(config):
    dataset, data_path = config["dataset"], config["data_path"]
    inter_file = os.path.join(data_path, f"{dataset}.inter")
    if os.path.isfile(inter_file):
        return
    url = known_dataset_url(dataset)
    if url is None:
        raise DatasetNotFoundError(f"'{inter_file}' does not exist. " + _expected_files_message(dataset, data_path))
    if not config["single_spec"]:
        raise DatasetNotFoundError(
            f"'{inter_file}' does not exist, and the processes of a distributed run do not download: start the run "
            "with recbole_duet.quick_start.run or the command line, which fetch it before starting them. "
            + _expected_files_message(dataset, data_path)
        )
    try:
        _download(dataset, url, data_path)
    except (OSError, RuntimeError) as error:
        raise DatasetNotFoundError(
            f"'{inter_file}' does not exist and downloading '{dataset}' from {url} failed ({error}). "
            + _expected_files_message(dataset, data_path)
        ) from None
    if not os.path.isfile(inter_file):
        raise DatasetNotFoundError(
            f"The download of '{dataset}' did not produce '{inter_file}'. "
            + _expected_files_message(dataset, data_path)
        )
