"""``python -m stream_denoise`` is the ``stream-denoise`` command."""
import sys

from .cli import main

sys.exit(main())
