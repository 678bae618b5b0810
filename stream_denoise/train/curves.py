"""Training curves from a run's log.jsonl, like the paper's Figure 5."""
from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def plot_log(log_path: Path, png: Path) -> Path | None:
    """Loss and validation curves, like the paper's Figure 5 (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: no curves.png (pip install matplotlib)")
        return None
    rows = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    if not rows:
        return None
    panels = [("g_loss", "d_loss", "att_loss", "ms_loss"), ("val_psnr", "val_input_psnr"), ("val_ssim",)]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.5))
    for ax, keys in zip(axes, panels):
        for key in keys:
            pts = [(r["step"], r[key]) for r in rows if key in r]
            if pts:
                ax.plot(*zip(*pts), label=key)
        ax.set_xlabel("step")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    plt.close(fig)
    return png
