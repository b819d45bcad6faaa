"""Errors that reach the user as one line: the problem and, where there is one, the fix."""


class PwflError(Exception):
    """Base class: the CLI prints these as ``pwfl: error: <message>`` and exits with 2."""


class ConfigError(PwflError, ValueError):
    """A configuration problem (unknown key, bad value, missing file)."""


class DataError(PwflError, ValueError):
    """A data set that cannot be loaded or split."""


class Interrupted(PwflError):
    """A run stopped by the user (Ctrl-C); the CLI prints ``pwfl: interrupted: <message>``
    and exits with 130."""
