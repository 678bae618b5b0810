"""An input opened the way the run's ``source`` config says: the one place that turns
that config into FFmpeg options, timeouts and a reconnect policy."""
from __future__ import annotations

import os
from collections.abc import Callable

from ..config import SourceConfig
from .base import Source
from .live import Backoff, LiveSource
from .sources import open_source
from .urls import is_device, is_url


def open_input(spec: str | os.PathLike, config: SourceConfig, *, threads: int = 0,
               cancelled: Callable[[], bool] | None = None) -> Source:
    """Files as they are; URLs and cameras with timeouts, transport and device settings,
    reconnected after a drop when ``config.reconnect`` (``cancelled()`` ends the waiting)."""
    if not (is_url(spec) or is_device(spec)):
        return open_source(spec, threads=threads, hwaccel=config.hwaccel, reference=config.reference)
    options: dict[str, str] = {}
    if str(spec).lower().startswith("rtsp"):
        options["rtsp_transport"] = config.rtsp_transport
    if is_device(spec):
        if config.device_size:
            options["video_size"] = config.device_size
        if config.device_fps:
            options["framerate"] = f"{config.device_fps:g}"
    timeout = (config.open_timeout, config.read_timeout)
    if not config.reconnect:
        return open_source(spec, threads=threads, timeout=timeout, options=options, hwaccel=config.hwaccel)
    backoff = Backoff(config.backoff_initial, config.backoff_max, config.reconnect_attempts)
    return LiveSource(str(spec), backoff, threads=threads, timeout=timeout, options=options,
                      hwaccel=config.hwaccel, cancelled=cancelled)
