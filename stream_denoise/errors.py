"""Exceptions a user can cause. The CLI turns them into one line and an exit code.

Messages name a setting by its config key (``encode.segment``; ``output.path`` and
``output.overwrite`` for ``run``'s own arguments), never by a command-line flag: the CLI
puts its flags in their place when it prints them.
"""
from __future__ import annotations


class StreamDenoiseError(Exception):
    """A failure explained in one line; exit code 1."""

    exit_code = 1


class UsageError(StreamDenoiseError):
    """A bad option, config key or value; exit code 2."""

    exit_code = 2


class ConfigError(UsageError):
    """A config file or override that does not load; names keys as the config spells them."""


class InputError(StreamDenoiseError):
    """An input that cannot be opened or decoded."""


class OutputError(StreamDenoiseError):
    """An output that cannot be written."""


class ModelError(StreamDenoiseError):
    """A model or checkpoint that cannot be loaded."""


class WorkerError(StreamDenoiseError):
    """A batch that kept failing on the workers, or a worker pool that could not start."""
