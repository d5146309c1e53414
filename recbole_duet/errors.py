"""Exceptions for mistakes a user can fix: each message names the key, file or value at fault."""


class ConfigError(ValueError):
    """A configuration key holds a value the plugin cannot use."""

    def __init__(self, key, value, expected):
        super().__init__(f"Invalid value {value!r} for config key '{key}': expected {expected}.")
        self.key = key


class DatasetNotFoundError(FileNotFoundError):
    """The atomic files of a dataset are neither on disk nor downloadable."""


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, torn, or holds something other than tensors and plain values."""


class ConfigFileError(ValueError):
    """A ``--config_files`` file is missing or is not valid yaml."""


class MissingDependencyError(ImportError):
    """A model needs an optional library that is not installed; the message says what to install."""
