"""The AttentiveGAN discriminator (Qian et al., CVPR 2018) as a pure nn.Module; used by
training only."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Discriminator(nn.Module):
    """Attentive discriminator: 5x5 conv stack, an attention-map head whose map gates the
    features, strided convs, and a fully connected head.

    Works for any crop size: the original release flattens a fixed 224x224 feature map
    into its first linear layer; here the strided features are average-pooled to a fixed
    4x4 grid first. ``forward`` returns (logit (B, 1), attention map (B, 1, H, W)): a
    logit rather than a probability so that the loss can use the numerically stable
    ``binary_cross_entropy_with_logits``. ``width`` scales every channel count (1.0 is the
    paper's 8-16-64-128-128-128).
    """

    def __init__(self, width: float = 1.0) -> None:
        super().__init__()
        chans = [3] + [max(1, round(c * width)) for c in (8, 16, 64, 128, 128, 128)]
        self.features = nn.ModuleList(
            nn.Conv2d(a, b, 5, padding=2) for a, b in zip(chans[:-1], chans[1:])
        )
        top = chans[-1]
        self.to_map = nn.Conv2d(top, 1, 5, padding=2)
        c7, c8 = max(1, round(64 * width)), max(1, round(32 * width))
        self.down = nn.Sequential(
            nn.Conv2d(top, c7, 5, stride=4, padding=2), nn.ReLU(inplace=True),
            nn.Conv2d(c7, c8, 5, stride=4, padding=2), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(4),
        )
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(c8 * 16, 1024), nn.ReLU(inplace=True), nn.Linear(1024, 1)
        )

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = image
        for conv in self.features:
            x = F.relu(conv(x))
        attention = self.to_map(x)
        return self.head(self.down(x * attention)), attention
