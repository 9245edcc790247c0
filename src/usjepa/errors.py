"""User-facing errors: the CLI prints their message, without a traceback, and exits 2."""


class UsjepaError(Exception):
    """Base of every error that names a user's input and what was expected."""


class ConfigError(UsjepaError, ValueError):
    """A configuration fault, raised before any work starts."""


class DataError(UsjepaError):
    """A data file or folder is missing, unreadable or malformed."""


class CheckpointError(UsjepaError):
    """A weights or checkpoint file is missing, unsafe, truncated or incompatible."""
