"""Exceptions a user can cause. The CLI turns them into one line and an exit code."""
from __future__ import annotations


class StreamDenoiseError(Exception):
    """A failure explained in one line; exit code 1."""

    exit_code = 1


class UsageError(StreamDenoiseError):
    """A bad option, config key or value; exit code 2."""

    exit_code = 2


class InputError(StreamDenoiseError):
    """An input that cannot be opened or decoded."""


class OutputError(StreamDenoiseError):
    """An output that cannot be written."""


class ModelError(StreamDenoiseError):
    """A model or checkpoint that cannot be loaded."""


class WorkerError(StreamDenoiseError):
    """A batch that kept failing on the workers, or a worker pool that could not start."""
