"""The paper's losses (Qian et al., CVPR 2018, section 4), each a small function.

Tensors: images (B, 3, H, W) in [0, 1]; attention maps and masks (B, 1, H, W).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def block_mask(mask: torch.Tensor, block: int) -> torch.Tensor:
    """The mask at the resolution the attention map gates on: a ``block`` x ``block`` cell
    is on when any pixel in it is.

    With pixel-unshuffle the map has one value per cell. Against the per-pixel mask it
    can only learn a cell's fraction of damaged pixels (about 0.6 for Gaussian noise), and
    the gate then lets through only that fraction of the repair.
    """
    if block == 1:
        return mask
    return F.interpolate(F.max_pool2d(mask, block), scale_factor=block, mode="nearest")


def attention_loss(
    maps: Sequence[torch.Tensor], mask: torch.Tensor, theta: float = 0.8, positive_weight: float = 1.0,
) -> torch.Tensor:
    """sum_t theta^(N-t) * MSE(A_t, M): later recurrent steps weigh more.

    ``positive_weight`` counts a damaged cell's error that many times a clean one's. Drops
    cover a fifth of a frame or less, so plain MSE (1, the paper's) is least costly when the
    map stays shut on the drops it is unsure of; a weight above 1 moves that balance
    towards finding them.
    """
    n = len(maps)
    weights = 1.0 + (positive_weight - 1.0) * mask
    return sum(theta ** (n - 1 - t) * (weights * (a - mask).pow(2)).mean() for t, a in enumerate(maps))


def inverse_mse_weights(images: torch.Tensor, clean: torch.Tensor, floor: float = 1e-4) -> torch.Tensor:
    """Per-sample weights inversely proportional to the MSE of ``images``, mean 1 (no gradient).

    Plain MSE lets heavily degraded samples dominate: a faint dust frame (39 dB) weighs
    ~25x less than a rainy one (25 dB), so the net learns to trade its precision for rain
    and ends up below the input on dust.
    - Given the degraded *inputs* (``loss.sample_weighting: input_relative``), every sample
      counts by how much of its own damage is repaired.
    - Given the generator's *outputs* (``output_relative``), the weighted MSE has the
      gradient of the mean per-sample log MSE: what mean PSNR, the evaluation metric,
      measures. Kinds the net already repairs well then weigh more than they would by
      their input alone.
    ``floor`` (40 dB) bounds the weight of nearly clean samples.
    """
    err = (images.detach().float() - clean).pow(2).mean(dim=(1, 2, 3))
    w = 1.0 / (err + floor)
    return w / w.mean()


def multiscale_loss(
    outputs: Sequence[torch.Tensor], clean: torch.Tensor, weights: Sequence[float] = (0.6, 0.8, 1.0),
    sample_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """MSE of each output (coarsest first: 1/4, 1/2, 1) against the clean image resized to it,
    optionally weighted per sample (``sample_weights`` (B,), see :func:`inverse_mse_weights`)."""
    total = clean.new_zeros(())
    for out, w in zip(outputs, weights, strict=True):
        target = clean if out.shape[-2:] == clean.shape[-2:] else F.interpolate(
            clean, size=out.shape[-2:], mode="area")
        per_sample = (out - target).pow(2).mean(dim=(1, 2, 3))
        if sample_weights is not None:
            per_sample = per_sample * sample_weights
        total = total + w * per_sample.mean()
    return total


def fine_gate_loss(
    factor: torch.Tensor, proposal: torch.Tensor, noisy: torch.Tensor, clean: torch.Tensor,
    sample_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """The output's squared error as a function of the per-pixel gate factor alone
    (B, 1, H, W): ``noisy + factor * proposal`` against ``clean``, with the correction the
    cell gate lets through (``proposal``) held fixed, per sample weighted like the
    multi-scale loss. Its minimum is the best factor for each pixel, so the head learns
    where the reconstruction helps and where it only blurs clean ground.

    Taken on the factor before its clamp to [0, 1], which would stop the gradient. The
    earlier target, the per-pixel mask grown by one pixel, weighted 4x on damage and
    counted in damaged cells only, missed the clean cells the attention map opens, which
    hold most of what a perfect per-pixel gate would win (+0.61 of +0.67 dB on v6's
    raindrops, ``benchmarks/headroom.py``).
    """
    err = (noisy + factor * proposal.detach() - clean).pow(2).mean(dim=(1, 2, 3))
    if sample_weights is not None:
        err = err * sample_weights
    return err.mean()


def affine_loss(
    noisy: torch.Tensor, clean: torch.Tensor, mask: torch.Tensor, affine: torch.Tensor, floor: float = 1e-4,
) -> torch.Tensor:
    """The global head's gain and offset (``affine`` (B, 6)) applied to the input, scored on
    the pixels the per-pixel ``mask`` (B, 1, H, W) leaves clean: there only global damage
    (snow's veil) is left, and on a rainy frame the right correction is none.

    Each sample's MSE there is divided by the input's own (plus ``floor``), as mean PSNR
    counts it: pooled, the veiled frames' large errors taught the head to darken rainy and
    dusty frames by 2 levels, which costs their nearly clean pixels more than it gains.
    """
    gain, offset = affine[:, :3, None, None], affine[:, 3:, None, None]
    keep = 1.0 - mask
    count = (3 * keep.sum(dim=(1, 2, 3))).clamp_min(1.0)
    err = ((noisy + gain * noisy + offset - clean).pow(2) * keep).sum(dim=(1, 2, 3)) / count
    base = ((noisy - clean).pow(2) * keep).sum(dim=(1, 2, 3)) / count
    return (err / (base + floor)).mean()


def veil_loss(logit: torch.Tensor, veil: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The veil head's two parts against each sample's known veil (B,): binary cross-entropy
    of its logit (B, 1) of "veiled" against veil > 0, plus the squared error of its veil
    (B, 1), probability times strength, in percent of a pixel (veils are a few
    hundredths). The veil's gradient reaches the strength alone (``VeilHead``), whose
    best value is then a veiled frame's mean veil. Samples whose veil is unknown (NaN:
    real pairs) are left out; a batch of only those gives 0.

    A first form, a plain regression of the veil through a zero-initialised read-out,
    gave every frame the same 0.93 % after 2,000 steps (docs/architecture.md, "The network's
    heads")."""
    known = torch.isfinite(target)
    if not bool(known.any()):
        return (logit.sum() + veil.sum()) * 0.0
    target = target[known]
    bce = F.binary_cross_entropy_with_logits(logit[:, 0][known], (target > 0).to(logit.dtype))
    return bce + ((veil[:, 0][known] - target) * 100.0).pow(2).mean()


def generator_adversarial_loss(fake_logit: torch.Tensor) -> torch.Tensor:
    """-log D(G(x)), written on logits for numerical stability."""
    return F.binary_cross_entropy_with_logits(fake_logit, torch.ones_like(fake_logit))


def discriminator_loss(
    real_logit: torch.Tensor, fake_logit: torch.Tensor,
    real_map: torch.Tensor, fake_map: torch.Tensor, attention: torch.Tensor, gamma: float = 0.05,
) -> torch.Tensor:
    """-log D(clean) - log(1 - D(output)) + gamma * L_map.

    L_map asks the discriminator's own attention map to find what the generator's final
    map found on outputs (``attention``) and nothing on clean images.
    """
    bce = F.binary_cross_entropy_with_logits
    adv = bce(real_logit, torch.ones_like(real_logit)) + bce(fake_logit, torch.zeros_like(fake_logit))
    l_map = F.mse_loss(fake_map, attention) + F.mse_loss(real_map, torch.zeros_like(real_map))
    return adv + gamma * l_map
