"""The executor a run config names, running the Denoiser that config describes (or a
model the caller brings). Ray is imported only here, and only when asked for."""
from __future__ import annotations

from functools import partial

from ..config import RunConfig
from ..errors import StreamDenoiseError
from . import BatchModel, Executor, ModelFactory


def open_executor(config: RunConfig, model: BatchModel | None = None) -> Executor:
    """The executor ``config.executor`` names, running ``model`` or the configured Denoiser."""
    factory: ModelFactory
    if model is not None:
        factory = partial(_same, model)
    else:
        from ..denoiser import Denoiser  # torch import deferred until a model is needed

        factory = partial(Denoiser.from_config, config.model, config.filters)
    if config.executor.kind == "ray":
        try:
            from .ray_pool import RayExecutor
        except ImportError:
            raise StreamDenoiseError(
                "executor.kind ray needs Ray: pip install 'stream-denoise[ray]'") from None
        return RayExecutor(factory, config.executor)
    from .local import LocalExecutor

    return LocalExecutor(factory)


def _same(model: BatchModel) -> BatchModel:
    return model
