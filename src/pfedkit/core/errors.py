"""Errors that the CLI turns into one-line messages with exit code 2."""


class PfedkitError(Exception):
    """Base class of every error pfedkit reports to users without a traceback."""


class ConfigError(PfedkitError):
    """A config key, value or combination is invalid. ``key``: the dotted config key at fault,
    when there is one (`pfedkit.core.config.load_config` adds where the file wrote it)."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class DatasetNotFoundError(PfedkitError):
    """A dataset's files are missing; the message says how to obtain them."""


class DatasetCorruptError(PfedkitError):
    """A dataset file exists but cannot be read or decoded; the message names the file and how
    to restore it."""


class PartitionError(PfedkitError):
    """A partition constraint cannot be met; the message names it and what to change."""
