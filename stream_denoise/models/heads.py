"""The generator's optional heads and the pieces they share with it (pure nn.Modules).

The veil head (:class:`VeilHead`), the pixel-resolution fine gate (:class:`PixelGate`) and
the global affine head's input features (:func:`_levels`, :func:`_attention_spread`); see
:class:`~stream_denoise.models.generator.GeneratorConfig` and docs/models.md.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _conv(cin: int, cout: int, k: int = 3, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride, padding=dilation * (k // 2), dilation=dilation)


def _levels(x: torch.Tensor) -> torch.Tensor:
    """(B, 6): per colour, the mean and the dark level of a pixel-unshuffled image (the
    last channel, the attention map, is left out): the mean over the image of the minimum
    over each 7 x 7 neighbourhood of cells."""
    b, c, h, w = x.shape
    colours = x[:, : c - 1].reshape(b, 3, (c - 1) // 3, h, w)
    low = colours.amin(dim=2)
    dark = -F.max_pool2d(-low, 7, stride=1, padding=3)
    return torch.cat([colours.mean(dim=(2, 3, 4)), dark.mean(dim=(2, 3))], 1)


def _attention_spread(attention: torch.Tensor) -> torch.Tensor:
    """(B, 4): the map's mean and its share of cells above 0.5, plain and after 3 x 3 and
    5 x 5 erosions: many small spots (snow) vanish under erosion, large blobs (drops) stay."""
    on = [(-F.max_pool2d(-attention, k, stride=1, padding=k // 2) > 0.5).float().mean(dim=(1, 2, 3))
          for k in (1, 3, 5)]
    return torch.stack([attention.mean(dim=(1, 2, 3)), *on], 1)


# The grey level snow's veil mixes in, on 0-1 (degrade/snow.py takes it from here).
AIR_LIGHT = 225.0 / 255.0


class VeilHead(nn.Module):
    """Is the frame veiled, and by how much: from the pixel-unshuffled image and the
    attention map, three 3x3 convs (the second of stride 2), the features' mean and
    maximum over the image and a linear read-out give the logit of "veiled" (many small
    bright streaks tell snow from drops or dust); the veil is its probability times
    ``strength``, a veiled frame's mean veil. ``strength`` starts at zero, so a net grown
    with this head keeps its output while the classifier, randomly initialised, learns
    from the first step (zero-initialised, it took thousands of steps to start)."""

    def __init__(self, channels: int, width: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(_conv(channels, width), nn.ReLU(), _conv(width, width, stride=2), nn.ReLU(),
                                   _conv(width, width), nn.ReLU())
        self.out = nn.Linear(2 * width, 1)
        self.strength = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, threshold: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, h, w) -> logit (B, 1) and veil (B, 1), the latter not clamped (its loss
        needs the gradient everywhere) and trainable through ``strength`` alone; below
        ``threshold`` the probability counts as 0, and it rises linearly from there to 1."""
        h = self.convs(x)
        logit = self.out(torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], 1))
        p = ((torch.sigmoid(logit) - threshold) / (1 - threshold)).clamp(0, 1)
        return logit, p.detach() * self.strength


def _unveil(image: torch.Tensor, veil: torch.Tensor) -> torch.Tensor:
    """Invert ``image = clean * (1 - v) + AIR_LIGHT * v`` per image; ``veil`` (B, 1)."""
    v = veil.clamp(0.0, 0.5)[..., None, None]
    return (image - AIR_LIGHT * v) / (1 - v)


class PixelGate(nn.Sequential):
    """The fine gate at pixel resolution: the decoder features (reduced to 8 channels by a
    1x1 conv, repeated over each cell's pixels), the image, the proposed residual and the
    attention map, through ``depth`` 3x3 convs of ``width`` and a 1x1 conv to one factor
    per pixel, returned unshuffled as (B, r*r, h, w) like the cell head's. Thin convs at
    full resolution are slow on a CPU: width 8, depth 3 made lite 32 % slower per frame."""

    def __init__(self, r: int, features: int, width: int, depth: int) -> None:
        sizes = [8 + 3 + 3 + 1] + [width] * depth
        super().__init__(
            nn.Conv2d(features, 8, 1),
            *(m for a, b in zip(sizes[:-1], sizes[1:]) for m in (_conv(a, b), nn.ReLU())),
            nn.Conv2d(width, 1, 1),
        )
        self.r = r

    def forward(self, y: torch.Tensor, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        r = self.r
        up = (lambda t: F.interpolate(t, scale_factor=r, mode="nearest")) if r > 1 else (lambda t: t)
        shuffle = (lambda t: F.pixel_shuffle(t, r)) if r > 1 else (lambda t: t)
        z = torch.cat([up(self[0](y)), shuffle(x[:, :-1]), shuffle(out), up(x[:, -1:])], 1)
        for layer in list(self)[1:]:
            z = layer(z)
        return F.pixel_unshuffle(z, r) if r > 1 else z
