"""Perceptual loss: MSE between VGG16 features of output and clean image.

ImageNet weights cannot be downloaded at run time, so the loss runs only when the config
names a local VGG16 state dict in torchvision's layout (``features.N.weight``, e.g.
``vgg16-397923af.pth``); otherwise it is off and one log line says so.
"""
from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelError

log = logging.getLogger(__name__)

# VGG16's convolution widths up to relu3_3 ("M" = max-pool), in torchvision's indexing.
_VGG16_TO_RELU3_3 = (64, 64, "M", 128, 128, "M", 256, 256, 256)
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


def _vgg16_features() -> nn.Sequential:
    layers: list[nn.Module] = []
    cin = 3
    for v in _VGG16_TO_RELU3_3:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, int(v), 3, padding=1), nn.ReLU(inplace=True)]
            cin = int(v)
    return nn.Sequential(*layers)


class PerceptualLoss(nn.Module):
    def __init__(self, state_dict: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.features = _vgg16_features()
        wanted = {k[len("features."):]: v for k, v in state_dict.items()
                  if k.startswith("features.") and k[len("features."):] in self.features.state_dict()}
        self.features.load_state_dict(wanted, strict=True)
        self.features.requires_grad_(False).eval()
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1))

    @classmethod
    def from_config(cls, loss_cfg, device: torch.device) -> PerceptualLoss | None:
        if loss_cfg.perceptual <= 0:
            return None
        if not loss_cfg.vgg16_weights:
            log.warning("perceptual loss off: no local VGG16 weights given (loss.vgg16_weights)")
            return None
        try:
            sd = torch.load(loss_cfg.vgg16_weights, map_location="cpu", weights_only=True)
            return cls(sd).to(device)
        except (OSError, RuntimeError) as e:
            raise ModelError(f"cannot load VGG16 weights {loss_cfg.vgg16_weights}: {e}") from None

    def forward(self, output: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
        norm = lambda x: (x - self.mean) / self.std  # noqa: E731
        return F.mse_loss(self.features(norm(output)), self.features(norm(clean)))
