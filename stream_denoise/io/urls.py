"""What an input or output spec names (a URL, a camera), and messages that never carry
its credentials. A leaf module: sources, sinks and the layers above all import it.
"""
from __future__ import annotations

import os
import re

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
# Userinfo is everything between "scheme://" and the last "@" before the path.
_USERINFO = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^/?#\s]*@")


def redact(url: str) -> str:
    """Hide ``user:pass@`` in every URL in ``url`` so messages and logs never carry it.

    >>> redact("rtsp://admin:hunter2@10.0.0.5:554/live")
    'rtsp://***@10.0.0.5:554/live'
    """
    return _USERINFO.sub(r"\1***@", url)


def is_url(spec: str | os.PathLike) -> bool:
    """True for ``scheme://...`` specs (rtsp, http(s), udp, srt, ...), which go to FFmpeg."""
    return isinstance(spec, str) and bool(_URL.match(spec))


def is_device(spec: str | os.PathLike) -> bool:
    """A local camera (V4L2 ``/dev/videoN``)."""
    return str(spec).startswith("/dev/video")


def reason(error: BaseException) -> str:
    """The one-line, credential-free cause of an FFmpeg/OS error."""
    text = getattr(error, "strerror", None) or str(error) or type(error).__name__
    return redact(" ".join(str(text).split()))
