"""``python -m stream_denoise`` is the ``stream-denoise`` command."""
import sys

from .cli import main

if __name__ == "__main__":  # not when a spawned data worker re-imports it
    sys.exit(main())
