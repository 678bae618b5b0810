"""The same trainer on several workers through Ray Train (``TorchTrainer``).

Each worker runs one :class:`Trainer` with its rank; Ray Train starts the workers, sets
up ``torch.distributed`` (gloo on CPUs, NCCL on GPUs) and hands each its GPU. Rank 0
writes the run folder, so on a cluster ``out_dir`` must be storage that rank 0's node
can write and you can read (a shared volume). Needs ``pip install 'ray[train]'``.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..errors import StreamDenoiseError
from .config import TrainConfig

log = logging.getLogger(__name__)


def _worker_loop(cfg: dict[str, Any]) -> None:
    import ray.train

    from .trainer import Trainer

    ctx = ray.train.get_context()
    trainer = Trainer(TrainConfig.model_validate(cfg["config"]), cfg["out"],
                      rank=ctx.get_world_rank(), world=ctx.get_world_size())
    if cfg["resume"]:
        trainer.resume(cfg["resume"])
    elif cfg["init"]:
        trainer.init_from(cfg["init"])
    trainer.fit(max_minutes=cfg["max_minutes"], budget_minutes=cfg["budget_minutes"])


def _absolute_paths(config: TrainConfig) -> TrainConfig:
    def fix(p: str | None) -> str | None:
        return str(Path(p).resolve()) if p and Path(p).exists() else p

    data = config.data.model_copy(update={"sources": [fix(s) for s in config.data.sources],
                                          "paired": fix(config.data.paired)})
    loss = config.loss.model_copy(update={"vgg16_weights": fix(config.loss.vgg16_weights)})
    return config.model_copy(update={"data": data, "loss": loss})


def fit_on_ray(
    config: TrainConfig, out_dir: str | Path, *, workers: int, use_gpu: bool = False,
    address: str | None = None, resume: str | None = None, init: str | None = None,
    max_minutes: float | None = None, budget_minutes: float | None = None,
) -> dict[str, Any]:
    """Train with ``workers`` Ray Train workers; returns rank 0's final step and best PSNR."""
    try:
        import ray
        from ray.train import RunConfig, ScalingConfig
        from ray.train.torch import TorchTrainer
    except ImportError:
        raise StreamDenoiseError("training on Ray needs Ray Train: pip install 'ray[train]'") from None
    out = Path(out_dir).resolve()
    config = _absolute_paths(config)  # workers do not run in this folder
    if init and Path(init).exists():
        init = str(Path(init).resolve())
    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    try:
        trainer = TorchTrainer(
            _worker_loop,
            train_loop_config={"config": config.model_dump(mode="json"), "out": str(out),
                               "resume": resume and str(Path(resume).resolve()),
                               "init": init, "max_minutes": max_minutes,
                               "budget_minutes": budget_minutes},
            scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu),
            run_config=RunConfig(name="stream-denoise", storage_path=str(out / "ray")),
        )
        result = trainer.fit()
    finally:
        if started_ray:
            ray.shutdown()
    if result.error is not None:
        raise StreamDenoiseError(f"Ray Train run failed: {result.error}") from None
    import torch

    final = torch.load(out / "last.pt", map_location="cpu", weights_only=True)  # rank 0's
    return {"step": int(final["step"]), "total_steps": int(final.get("total_steps", config.steps)),
            "best_val_psnr": float(final["best_psnr"])}
