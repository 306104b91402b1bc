"""Errors a user can cause. The CLI prints their message on one line and exits with code 2."""


class PntmError(Exception):
    """Base class for every user-facing error (bad config, bad run directory, bad device...)."""


class ConfigError(PntmError):
    """A configuration is malformed: unknown key, wrong type, bad value, bad --set, bad YAML."""


class RunDirError(PntmError):
    """A run directory is missing, incomplete, corrupt, or does not match what was asked."""


class DataError(PntmError):
    """A user's JSONL data file is unreadable or malformed; the message starts ``FILE:LINE:``."""
