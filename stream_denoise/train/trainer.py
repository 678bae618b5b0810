"""The AttentiveGAN trainer: the paper's losses, checkpoints that resume exactly, logs.

Batches are a pure function of ``(seed, step)`` and are made ahead of the model
(:mod:`.batches`: a helper thread, or worker processes for a GPU), so a resumed run sees
the same data as an uninterrupted one and the model does not wait for synthesis.
On CUDA the step runs under bfloat16 autocast, channels_last, with cuDNN's autotuner
(fast, not bit-reproducible); on the CPU it is float32 and deterministic.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..denoiser import pick_device
from ..errors import UsageError
from ..metrics import psnr_ssim
from ..models.discriminator import Discriminator
from ..models.generator import Generator
from .batches import BatchMaker
from .budget import TimeBudget
from .checkpoints import load_checkpoint, save_checkpoint
from .config import TrainConfig
from .curves import plot_log
from .data import (
    PairedFolder,
    Sample,
    SyntheticPairs,
    load_footage,
    split_footage,
    to_tensors,
)
from .losses import (
    affine_loss,
    attention_loss,
    block_mask,
    discriminator_loss,
    fine_gate_loss,
    generator_adversarial_loss,
    inverse_mse_weights,
    multiscale_loss,
    veil_loss,
)
from .perceptual import PerceptualLoss
from .surgery import embed, head_parameters

log = logging.getLogger(__name__)

class Trainer:
    """Trains a generator/discriminator pair into ``out_dir`` (last.pt, best.pt, log.jsonl).

    With ``world`` > 1 (one Trainer per process under Ray Train, ``torch.distributed``
    initialised) each rank draws its share of every batch, gradients are averaged across
    ranks after each backward pass, and rank 0 alone validates, logs and checkpoints.
    Same seed, same initial weights on every rank; so the ranks stay identical.
    """

    def __init__(self, config: TrainConfig, out_dir: str | Path, *, rank: int = 0, world: int = 1) -> None:
        if config.batch_size % world:
            raise UsageError(f"batch_size {config.batch_size} does not split over {world} workers")
        self.config = config
        self.rank, self.world = rank, world
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.device = pick_device(config.device)
        self.cuda = self.device.type == "cuda"
        self.amp = config.amp and self.cuda
        torch.manual_seed(config.seed)
        self.generator = Generator(config.arch).to(self.device)
        self.discriminator = Discriminator(config.disc_width).to(self.device)
        if self.cuda:
            torch.backends.cudnn.benchmark = True  # fixed crop size: autotune once
            self.generator.to(memory_format=torch.channels_last)
            self.discriminator.to(memory_format=torch.channels_last)
        opt = config.optim
        heads = {id(p) for p in head_parameters(self.generator)}
        trunk = [p for p in self.generator.parameters() if id(p) not in heads]
        if opt.heads_only:
            if not heads:
                raise UsageError("optim.heads_only needs a model with fine_gate, global_affine or veil_head")
            for p in trunk:
                p.requires_grad_(False)
        groups = [{"params": head_parameters(self.generator), "base_lr": opt.head_lr or opt.lr}]
        if not opt.heads_only:
            groups.append({"params": trunk, "base_lr": opt.lr})
        self.opt_g = torch.optim.Adam([g for g in groups if g["params"]], lr=opt.lr, betas=opt.betas)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=opt.d_lr, betas=opt.betas)
        self.perceptual = PerceptualLoss.from_config(config.loss, self.device)
        self.train_set, self.val_samples = self._datasets()
        self.step = 0
        self.total_steps = config.steps  # lowered by a time budget (fit), kept in checkpoints
        self.best_psnr = -math.inf

    # -- data -------------------------------------------------------------------------
    def _datasets(self) -> tuple[SyntheticPairs | PairedFolder, list[Sample]]:
        d = self.config.data
        if d.paired:
            train = PairedFolder(d.paired, d.crop, part="train", val_fraction=d.val_fraction)
            val_src = PairedFolder(d.paired, d.val_crop, part="val", val_fraction=d.val_fraction)
        else:
            footage = load_footage(d.sources, max_side=d.max_side, frame_step=d.frame_step)
            train_images, val_images = split_footage(footage, d.val_fraction)
            train = SyntheticPairs(train_images, self.config.degrade, d.crop)
            val_src = SyntheticPairs(val_images or train_images, self.config.degrade, d.val_crop)
        # A fixed validation set: seeds far from any training step's.
        val = [val_src.sample((self.config.seed, 1_000_000_007, i)) for i in range(d.val_samples)]
        return train, val

    def seeds(self, step: int) -> list[tuple[int, int, int]]:
        """Sample seeds of this rank's share of the batch at ``step`` (all of it with one process)."""
        share = self.config.batch_size // self.world
        return [(self.config.seed, step, j) for j in range(self.rank * share, (self.rank + 1) * share)]

    def batch(self, step: int) -> list[Sample]:
        return [self.train_set.sample(s) for s in self.seeds(step)]

    def lr_factor(self, step: int) -> float:
        """Learning-rate multiplier at ``step``: a function of the step alone, so there is
        no scheduler state to save and a resumed run continues the same curve."""
        o = self.config.optim
        if o.schedule == "constant":
            return 1.0
        progress = min(1.0, step / max(1, self.total_steps))
        return o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    def _set_lr(self) -> float:
        factor = self.lr_factor(self.step)
        for group in self.opt_g.param_groups:
            group["lr"] = group["base_lr"] * factor
        for group in self.opt_d.param_groups:
            group["lr"] = self.config.optim.d_lr * factor
        return self.config.optim.lr * factor

    # -- one step ---------------------------------------------------------------------
    def train_step(self, samples: list[Sample]) -> dict[str, float]:
        c = self.config.loss
        lr = self._set_lr()
        noisy, clean, pixel_mask, veil = (self._on_device(t) for t in to_tensors(samples))
        mask = block_mask(pixel_mask, self.generator.config.unshuffle)
        self.generator.train()
        with self._autocast():
            out = self.generator(noisy)
            l_att = attention_loss(out.attention, mask, c.theta, c.attention_positive_weight)
            weights = None
            if c.sample_weighting != "none":
                relative_to = noisy if c.sample_weighting == "input_relative" else out.image
                weights = inverse_mse_weights(relative_to, clean)
            l_ms = multiscale_loss((out.side4, out.side2, out.image), clean, c.multiscale, weights)
            loss_g = l_att + l_ms
            stats = {"att_loss": l_att.item(), "ms_loss": l_ms.item(), "lr": lr}
            if out.fine_gate is not None:
                l_fine = fine_gate_loss(out.fine_gate, out.proposal, noisy, clean, weights)
                loss_g = loss_g + l_fine
                stats["fine_gate_loss"] = l_fine.item()
            if out.affine is not None:  # the global head's own loss; nothing else trains it
                l_aff = affine_loss(noisy, clean, pixel_mask, out.affine)
                loss_g = loss_g + l_aff
                stats["affine_loss"] = l_aff.item()
            if out.veil is not None:  # likewise the veil head's
                l_veil = veil_loss(out.veil_logit.float(), out.veil.float(), veil)
                loss_g = loss_g + l_veil
                stats["veil_loss"] = l_veil.item()
            if self.perceptual is not None:
                l_p = self.perceptual(out.image, clean)
                loss_g = loss_g + c.perceptual * l_p
                stats["perceptual_loss"] = l_p.item()
            adversarial = c.adversarial > 0 and self.step >= c.adversarial_from_step
            if adversarial:
                fake_logit, _ = self.discriminator(out.image)
                l_adv = generator_adversarial_loss(fake_logit)
                loss_g = loss_g + c.adversarial * l_adv
                stats["adv_loss"] = l_adv.item()
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self._average_gradients(self.generator)
        self.opt_g.step()
        stats["g_loss"] = loss_g.item()
        if adversarial:
            with self._autocast():
                real_logit, real_map = self.discriminator(clean)
                fake_logit, fake_map = self.discriminator(out.image.detach())
                loss_d = discriminator_loss(real_logit, fake_logit, real_map, fake_map,
                                            out.attention[-1].detach(), c.gamma)
            self.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            self._average_gradients(self.discriminator)
            self.opt_d.step()
            stats["d_loss"] = loss_d.item()
        self.step += 1
        return stats

    def _on_device(self, t: torch.Tensor) -> torch.Tensor:
        t = t.to(self.device, non_blocking=True)
        return t.contiguous(memory_format=torch.channels_last) if self.cuda and t.dim() == 4 else t

    def _autocast(self) -> torch.autocast:
        """bfloat16 on CUDA (its range needs no loss scaling); a no-op elsewhere."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp)

    def _average_gradients(self, module: torch.nn.Module) -> None:
        if self.world == 1:
            return
        import torch.distributed as dist

        for p in module.parameters():
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad /= self.world

    def _from_rank0(self, value: int) -> int:
        """Rank 0's value on every rank (wall-clock decisions must not split the ranks)."""
        if self.world == 1:
            return value
        import torch.distributed as dist

        on = self.device if dist.get_backend() == "nccl" else "cpu"  # NCCL moves CUDA tensors only
        t = torch.tensor([value], device=on)
        dist.broadcast(t, 0)
        return int(t.item())

    def _all_agree(self, flag: bool) -> bool:
        return bool(self._from_rank0(int(flag)))

    @torch.inference_mode()
    def validate(self) -> dict[str, float]:
        self.generator.eval()
        results: dict[str, list[float]] = {"psnr": [], "ssim": [], "input_psnr": [], "input_ssim": []}
        for i in range(0, len(self.val_samples), 8):
            noisy, clean, *_ = (t.to(self.device) for t in to_tensors(self.val_samples[i:i + 8]))
            p, s = psnr_ssim(self.generator(noisy).image, clean)
            ip, is_ = psnr_ssim(noisy, clean)
            n = len(noisy)
            for key, v in (("psnr", p), ("ssim", s), ("input_psnr", ip), ("input_ssim", is_)):
                results[key] += [v] * n
        return {k: float(np.mean(v)) for k, v in results.items()}

    # -- checkpoints ------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
            "step": self.step, "total_steps": self.total_steps, "best_psnr": self.best_psnr,
            "arch": self.config.arch.to_dict(),
            "train_config": self.config.model_dump(mode="json"),
            "torch_rng": torch.get_rng_state(),
        }

    def save(self, name: str, summary: dict[str, Any] | None = None) -> Path:
        return save_checkpoint(self.out / name, {**self.state(), "summary": summary or {}})

    def resume(self, path: str | Path) -> None:
        blob = load_checkpoint(path, self.device)
        if blob.get("arch") != self.config.arch.to_dict():
            raise UsageError(f"{path} was trained with a different model architecture than the config's")
        self.generator.load_state_dict(blob["generator"])
        self.discriminator.load_state_dict(blob["discriminator"])
        self.opt_g.load_state_dict(blob["opt_g"])
        self.opt_d.load_state_dict(blob["opt_d"])
        self.step, self.best_psnr = int(blob["step"]), float(blob["best_psnr"])
        # a run that a time budget shortened keeps its own end (and so its lr curve)
        saved, planned = blob.get("total_steps"), blob["train_config"]["steps"]
        self.total_steps = int(saved) if saved is not None and saved < planned else self.config.steps
        torch.set_rng_state(blob["torch_rng"])

    def init_from(self, name_or_path: str | Path) -> None:
        """Start from a trained generator (bundled name or checkpoint), fresh optimisers:
        how a shipped model is trained further without shipping optimiser state.

        The config's model may differ from the checkpoint's only where no output changes:
        added zero-initialised layers (input skip, fine gate, global affine, veil), another gate
        dead zone, or a wider autoencoder or attentive-recurrent net (``surgery.embed``); a head
        of another shape starts afresh (as if the net had none)."""
        from ..models.weights import load_generator

        generator, _ = load_generator(name_or_path)
        arch, old = self.config.arch, generator.config
        grown = replace(old, input_skip=arch.input_skip, gate_threshold=arch.gate_threshold,
                        fine_gate=arch.fine_gate, fine_width=arch.fine_width, fine_depth=arch.fine_depth,
                        fine_pixel=arch.fine_pixel, global_affine=arch.global_affine,
                        affine_features=arch.affine_features, veil_head=arch.veil_head,
                        veil_width=arch.veil_width, veil_threshold=arch.veil_threshold,
                        ae_width=max(old.ae_width, arch.ae_width), arn_width=max(old.arn_width, arch.arn_width))
        if grown != arch:
            raise UsageError(f"{name_or_path} has a different architecture than the config's model "
                             "(only added heads, the gate's dead zone and a wider ae_width or arn_width "
                             "may differ)")
        state = generator.state_dict()
        fine_shape = (arch.fine_width, arch.fine_depth, arch.fine_pixel)
        for head, changed in (("autoencoder.fine", fine_shape != (old.fine_width, old.fine_depth, old.fine_pixel)),
                              ("autoencoder.affine", arch.affine_features != old.affine_features),
                              ("veil", arch.veil_width != old.veil_width)):
            if changed:
                state = {k: v for k, v in state.items() if not k.startswith(f"{head}.")}
                log.info("the config's %s head has another shape than %s's: it starts afresh",
                         head.rsplit(".", 1)[-1], name_or_path)
        # at the checkpoint's width first, then embedded in the config's (a no-op when equal)
        same_width = Generator(replace(arch, ae_width=old.ae_width, arn_width=old.arn_width))
        missing, unexpected = same_width.load_state_dict(state, strict=False)
        if unexpected:
            raise UsageError(f"{name_or_path} has layers the config's model lacks: {', '.join(unexpected)}")
        if missing:  # only zero-initialised layers can be missing: output unchanged
            log.info("initialised from %s; new layers start as no-ops: %s",
                     name_or_path, ", ".join(missing))
        for part, was, now in (("autoencoder", old.ae_width, arch.ae_width), ("attentive-recurrent net",
                                                                               old.arn_width, arch.arn_width)):
            if now > was:
                log.info("%s widened from %d to %d channels; output unchanged", part, was, now)
        embed(self.generator, same_width.to(self.device))

    # -- the loop ---------------------------------------------------------------------
    def fit(self, *, max_minutes: float | None = None, budget_minutes: float | None = None,
            progress: bool = False) -> dict[str, Any]:
        """Train until ``config.steps``, or stop after ``max_minutes`` of wall time (a chunk
        of a longer run), or fit the whole run into ``budget_minutes`` (:mod:`.budget`), so
        that the learning-rate schedule ends on time."""
        from tqdm import tqdm

        c = self.config
        lead = self.rank == 0
        log_path = self.out / "log.jsonl"
        started = last_ckpt = time.monotonic()
        budget = None
        if budget_minutes is not None:
            budget = TimeBudget(budget_minutes * 60, started)
            max_minutes = budget_minutes if max_minutes is None else min(max_minutes, budget_minutes)
        bar = tqdm(total=self.total_steps, initial=self.step, disable=not (progress and lead), unit="step")
        with BatchMaker(self.train_set, self.seeds, c.data.workers) as batches, \
                (log_path.open("a") if lead else open(os.devnull, "w")) as logf:
            while self.step < self.total_steps:
                samples = batches.get(self.step, self.total_steps)
                t0 = time.monotonic()
                stats = self.train_step(samples)
                record: dict[str, Any] = {}
                # rank 0's clock decides, so every rank joins the same broadcast.
                if budget is not None and self._all_agree(
                        budget.due(self.step, self.total_steps, time.monotonic())):
                    total, rate = budget.fit(self.step, time.monotonic(), self.config.steps)
                    self.total_steps = self._from_rank0(total)
                    log.info("time budget: %.1f steps/s, so %d steps in all", rate, self.total_steps)
                    bar.total = self.total_steps
                    record = {"step": self.step, "budget_steps_per_s": rate, "budget_total_steps": self.total_steps}
                last = self.step == self.total_steps
                if self.step % c.log_every == 0 or last:
                    record |= {"step": self.step, **stats, "sec_per_step": time.monotonic() - t0}
                if lead and (self.step % c.val_every == 0 or last):
                    record |= {"step": self.step, **stats, **self._validate_and_keep_best()}
                if record:
                    record["elapsed_s"] = round(time.monotonic() - started, 1)
                    logf.write(json.dumps(record) + "\n")
                    logf.flush()
                bar.update(1)
                now = time.monotonic()
                if budget is not None:  # timed from the end of the first step (warm-up)
                    budget.start(self.step, now)
                if lead and now - last_ckpt > c.checkpoint_minutes * 60:
                    self.save("last.pt")
                    last_ckpt = now
                if self._all_agree(max_minutes is not None and now - started > max_minutes * 60):
                    if lead and self.step % c.val_every:  # stopped early: validate where it stopped
                        record = {"step": self.step, **self._validate_and_keep_best(),
                                  "elapsed_s": round(time.monotonic() - started, 1)}
                        logf.write(json.dumps(record) + "\n")
                    break
        bar.close()
        if lead:
            self.save("last.pt")
            plot_log(log_path, self.out / "curves.png")
        return {"step": self.step, "total_steps": self.total_steps, "best_val_psnr": self.best_psnr}

    def _validate_and_keep_best(self) -> dict[str, float]:
        val = self.validate()
        if val["psnr"] > self.best_psnr:
            self.best_psnr = val["psnr"]
            self.save("best.pt", {"step": self.step, **val})
        return {f"val_{k}": v for k, v in val.items()}
