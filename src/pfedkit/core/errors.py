"""Errors that the CLI turns into one-line messages with exit code 2."""


class PfedkitError(Exception):
    """Base class of every error pfedkit reports to users without a traceback."""


class ConfigError(PfedkitError):
    """A config key, value or combination is invalid."""


class DatasetNotFoundError(PfedkitError):
    """A dataset's files are missing; the message says how to obtain them."""


class PartitionError(PfedkitError):
    """A partition constraint cannot be met; the message names it and what to change."""
