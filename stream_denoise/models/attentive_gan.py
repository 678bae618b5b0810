"""AttentiveGAN (Qian et al., CVPR 2018): generator and discriminator as pure nn.Modules.

The generator is an attentive-recurrent network (ARN: residual blocks + ConvLSTM run for
``steps`` steps, each emitting an attention map) feeding a contextual autoencoder with
multi-scale side outputs. One module serves training (all maps and side outputs) and
inference (``Generator.forward`` returns them all; callers take what they need).

The architecture is a function of a few numbers (:class:`GeneratorConfig`), so the
``paper`` preset (the paper's exact layer list) and the CPU-sized ``lite`` preset are the
same code. Images are float tensors ``(B, 3, H, W)`` in [0, 1]; H and W must be multiples
of :meth:`GeneratorConfig.multiple` (the denoiser pads and crops).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class GeneratorConfig:
    """The numbers that fix the generator's shape.

    ``unshuffle`` > 1 runs the whole network on a pixel-unshuffled image (``r*r*3``
    channels at 1/r resolution): the cost per frame drops by about r*r, which is what
    makes real time on a CPU reachable. ``gate_output`` makes the autoencoder predict a
    residual that is applied only where the (supervised) attention map is on: away from
    drops the output is the input, so a small net does not have to learn the identity
    before it can learn to remove anything. ``input_skip`` adds a zero-initialised conv
    from the autoencoder's input straight to its output: with ``unshuffle`` the finest
    decoder level is narrower than the ``r*r*3`` pixels it predicts, and per-pixel noise
    cannot pass through that bottleneck. ``gate_threshold`` is a dead zone for the gate:
    attention below it counts as clean, and the gate rises linearly from it to 1. A small
    net's map hovers around 0.2 on undamaged areas, and a gate that lets that fraction of
    an imperfect residual through costs nearly clean frames (faint dust) more than it
    repairs (docs/models.md, v3).

    Two more heads, zero-initialised at their output, let a trained lite net be grown
    without changing its output. ``fine_gate``: with ``unshuffle`` the gate has one value
    per r x r cell, so a repaired cell loses the undamaged pixels around a drop's edge to
    the autoencoder's blurry reconstruction; two convs over the cell's pixels, the decoder
    features and the proposed residual scale the gate per pixel by ``clamp(1 + f, 0, 1)``,
    trained by its own loss (``losses.fine_gate_loss``); ``fine_depth`` 3x3
    convs of ``fine_width`` channels, then a 1x1 conv. With ``fine_pixel`` those convs run
    at pixel resolution (:class:`PixelGate`), where at cell resolution each pixel's factor
    is a linear read-out of its cell's features; it costs a third more time per frame on a
    CPU (docs/models.md, v7).
    ``global_affine``: a small MLP predicts a per-image gain and offset per colour, applied
    to every pixel outside the gate, for damage no attention map covers (the light veil of
    snow). It sees the pooled bottleneck (what damage there is) and, per colour, the mean
    and the dark level (mean of local minima, which a veil lifts and a drop does not);
    ``affine_features`` 2 adds the max-pooled bottleneck and the attention map's share of
    cells on, plain and after 3 x 3 and 5 x 5 erosions (a snowflake fills a cell or two,
    a drop many: with features 1 the head shifted rainy and snowy frames alike). It is
    trained by its own supervised loss alone (``losses.affine_loss``: the pixels no local
    damage touched), never by the output's error: that error taught it to darken rainy
    frames everywhere for the drops the gate had not fully repaired (-0.7 dB).

    ``veil_head``: a light veil (snow's air light) lifts every pixel below the attention
    mask's threshold, so the gate never opens on it. A small conv net over the image and
    the attention map (:class:`VeilHead`) tells whether the frame is veiled, and the veil
    ``v`` it removes, ``(x - AIR_LIGHT * v) / (1 - v)`` on the pixels the gate passes
    through unchanged, is that probability times a learnt strength. Both are trained on
    the known veils of synthetic pairs (``losses.veil_loss``), never by the output's error:
    flakes tell a snowy frame from a rainy one, which the affine head, taught by the
    output's error, could not. ``veil_threshold`` is a dead zone on that probability, as
    ``gate_threshold`` is on the attention map: a veil removed from a frame that has none
    costs a nearly clean frame (dust) more than the veil costs a snowy one.

    ``ae_width`` of a trained net can be grown: :meth:`Generator.embed` puts it into a
    wider one with the same output, to train more capacity on without starting over.
    """

    arn_width: int = 32
    steps: int = 4
    res_blocks: int = 5
    ae_width: int = 64
    dilations: tuple[int, ...] = (2, 4, 8, 16)
    unshuffle: int = 1
    gate_output: bool = False
    input_skip: bool = False
    gate_threshold: float = 0.0
    fine_gate: bool = False
    fine_width: int = 16
    fine_depth: int = 1
    fine_pixel: bool = False
    global_affine: bool = False
    affine_features: int = 1
    veil_head: bool = False
    veil_width: int = 24
    veil_threshold: float = 0.0

    def __post_init__(self) -> None:
        for name in ("arn_width", "steps", "ae_width", "unshuffle", "fine_width", "fine_depth", "veil_width"):
            if getattr(self, name) < 1:
                raise ValueError(f"GeneratorConfig.{name} must be >= 1")
        if self.res_blocks < 0:
            raise ValueError("GeneratorConfig.res_blocks must be >= 0")
        if self.ae_width % 2:
            raise ValueError("GeneratorConfig.ae_width must be even")
        for name in ("gate_threshold", "veil_threshold"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"GeneratorConfig.{name} must be in [0, 1)")
        if self.affine_features not in (1, 2):
            raise ValueError("GeneratorConfig.affine_features must be 1 or 2")
        for head in ("fine_gate", "veil_head"):
            if getattr(self, head) and not self.gate_output:
                raise ValueError(f"GeneratorConfig.{head} needs gate_output")
        object.__setattr__(self, "dilations", tuple(int(d) for d in self.dilations))

    @property
    def multiple(self) -> int:
        """Input height and width must be multiples of this (two stride-2 stages)."""
        return 4 * self.unshuffle

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS: dict[str, GeneratorConfig] = {
    # The paper's layer list, exactly (see tests/test_models.py for the parameter count).
    "paper": GeneratorConfig(),
    # Sized for real time on a 2-core CPU at 640x360; see benchmarks/.
    "lite": GeneratorConfig(
        arn_width=16, steps=3, res_blocks=2, ae_width=32, dilations=(2, 4), unshuffle=4,
        gate_output=True, input_skip=True, gate_threshold=0.3, fine_gate=True,
    ),
}


def _conv(cin: int, cout: int, k: int = 3, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride, padding=dilation * (k // 2), dilation=dilation)


class ResidualBlock(nn.Module):
    """Two 3x3 conv + ReLU, skip added, then ReLU (the paper's ARN block)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = _conv(width, width)
        self.conv2 = _conv(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.conv2(F.relu(self.conv1(x))))
        return F.relu(x + y)


class ConvLSTMCell(nn.Module):
    """ConvLSTM: gates i, f, g, o, each a 3x3 conv over [features, h]."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.gate_i = _conv(2 * width, width)
        self.gate_f = _conv(2 * width, width)
        self.gate_g = _conv(2 * width, width)
        self.gate_o = _conv(2 * width, width)

    def forward(
        self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        xh = torch.cat([x, h], dim=1)
        i = torch.sigmoid(self.gate_i(xh))
        f = torch.sigmoid(self.gate_f(xh))
        g = torch.tanh(self.gate_g(xh))
        o = torch.sigmoid(self.gate_o(xh))
        c = f * c + i * g
        return o * torch.tanh(c), c


class AttentiveRecurrentNet(nn.Module):
    """Runs ``steps`` recurrent steps; each returns an attention map (B, 1, h, w)."""

    def __init__(self, in_channels: int, width: int, steps: int, res_blocks: int) -> None:
        super().__init__()
        self.steps = steps
        self.width = width
        self.head = _conv(in_channels + 1, width)
        self.blocks = nn.Sequential(*(ResidualBlock(width) for _ in range(res_blocks)))
        self.lstm = ConvLSTMCell(width)
        self.to_map = _conv(width, 1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        b, _, h, w = x.shape
        attention = x.new_full((b, 1, h, w), 0.5)
        hidden = x.new_zeros((b, self.width, h, w))
        cell = torch.zeros_like(hidden)
        maps = []
        for _ in range(self.steps):
            feat = self.blocks(F.relu(self.head(torch.cat([x, attention], dim=1))))
            hidden, cell = self.lstm(feat, hidden, cell)
            attention = self.to_map(hidden)
            maps.append(attention)
        return maps


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


class AutoencoderOutput(NamedTuple):
    """The output and side outputs at 1/2 and 1/4; ``fine`` (B, r*r, h, w) per-pixel gate
    corrections and ``affine`` (B, 6) gain and offset per colour, None when off."""

    image: torch.Tensor
    side2: torch.Tensor
    side4: torch.Tensor
    fine: torch.Tensor | None
    affine: torch.Tensor | None


class ContextualAutoencoder(nn.Module):
    """Encoder to 1/4 scale, dilated context, decoder with additive skips and side outputs."""

    def __init__(
        self, channels: int, width: int, dilations: tuple[int, ...], input_skip: bool = False,
        fine_channels: int = 0, fine_width: int = 16, fine_depth: int = 1, fine_pixel: bool = False,
        global_affine: bool = False, affine_features: int = 1,
    ) -> None:
        super().__init__()
        w1, w2, w4 = width, 2 * width, 4 * width
        self.enc1 = nn.Conv2d(channels + 1, w1, 5, padding=2)
        self.enc2 = _conv(w1, w2, stride=2)
        self.enc3 = _conv(w2, w2)
        self.enc4 = _conv(w2, w4, stride=2)
        self.enc5 = _conv(w4, w4)
        self.enc6 = _conv(w4, w4)
        self.context = nn.ModuleList(_conv(w4, w4, dilation=d) for d in dilations)
        self.mid1 = _conv(w4, w4)
        self.mid2 = _conv(w4, w4)
        self.up1 = nn.ConvTranspose2d(w4, w2, 4, stride=2, padding=1)
        self.dec1 = _conv(w2, w2)
        self.up2 = nn.ConvTranspose2d(w2, w1, 4, stride=2, padding=1)
        self.dec2 = _conv(w1, w1 // 2)
        self.out = _conv(w1 // 2, channels)
        self.side4 = _conv(w4, channels)
        self.side2 = _conv(w2, channels)
        self.skip = _conv(channels + 1, channels) if input_skip else None
        # Heads that start as no-ops, so a trained net can be grown (GeneratorConfig).
        self.fine: nn.Sequential | None = None
        if fine_channels and fine_pixel:
            self.fine = PixelGate(round(fine_channels ** 0.5), w1 // 2, fine_width, fine_depth)
        elif fine_channels:
            fine_in = [w1 // 2 + 2 * channels + 1] + [fine_width] * fine_depth
            self.fine = nn.Sequential(
                *(m for a, b in zip(fine_in[:-1], fine_in[1:]) for m in (_conv(a, b), nn.ReLU())),
                nn.Conv2d(fine_width, fine_channels, 1),
            )
        self.affine_features = affine_features
        n_in = w4 + 6 if affine_features == 1 else 2 * w4 + 10
        self.affine = nn.Sequential(nn.Linear(n_in, 32), nn.ReLU(), nn.Linear(32, 6)) if global_affine else None
        for layer in (self.skip, self.fine and self.fine[-1], self.affine and self.affine[-1]):
            if layer is not None:
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)

    def input_segments(self, narrow: "ContextualAutoencoder") -> dict[str, list[tuple[int, int]]]:
        """The heads' first layers read the features beside other inputs: their input
        parts as (width in ``narrow``, width here), for :meth:`Generator.embed`."""
        (n1, n4), (w1, w4) = ((a.enc1.out_channels, a.enc4.out_channels) for a in (narrow, self))
        parts = {}
        if isinstance(self.fine, nn.Sequential) and not isinstance(self.fine, PixelGate):
            rest = self.fine[0].in_channels - w1 // 2
            parts["fine.0"] = [(n1 // 2, w1 // 2), (rest, rest)]
        if self.affine is not None:
            pooled = [(n4, w4), (6, 6)]
            parts["affine.0"] = pooled if self.affine_features == 1 else pooled + [(n4, w4), (4, 4)]
        return parts

    def forward(self, x: torch.Tensor) -> AutoencoderOutput:
        skip1 = F.relu(self.enc1(x))
        skip2 = F.relu(self.enc3(F.relu(self.enc2(skip1))))
        y = F.relu(self.enc4(skip2))
        y = F.relu(self.enc6(F.relu(self.enc5(y))))
        for conv in self.context:
            y = F.relu(conv(y))
        y = F.relu(self.mid2(F.relu(self.mid1(y))))
        affine = None
        if self.affine is not None:
            seen = [y.mean(dim=(2, 3)), _levels(x)]
            if self.affine_features == 2:
                seen += [y.amax(dim=(2, 3)), _attention_spread(x[:, -1:])]
            affine = self.affine(torch.cat(seen, 1).detach())
        side4 = self.side4(y)
        y = F.relu(self.up1(y)) + skip2
        y = F.relu(self.dec1(y))
        side2 = self.side2(y)
        y = F.relu(self.up2(y)) + skip1
        y = F.relu(self.dec2(y))
        out = self.out(y) if self.skip is None else self.out(y) + self.skip(x)
        # the heads read the trunk's features but do not train them: their own losses do
        if self.fine is None:
            fine = None
        elif isinstance(self.fine, PixelGate):
            fine = self.fine(y.detach(), x.detach(), out.detach())
        else:
            fine = self.fine(torch.cat([y, x, out], dim=1).detach())
        return AutoencoderOutput(out, side2, side4, fine, affine)


@torch.no_grad()
def _embed_channels(new: torch.Tensor, old: torch.Tensor, transposed: bool,
                    segments: list[tuple[int, int]] | None = None) -> None:
    """Put ``old`` into the leading channels of ``new`` in place and zero the weights from
    the extra input channels into the old output channels. A conv's weight is (out, in,
    k, k), a transposed conv's (in, out, k, k), a linear layer's (out, in); a bias is
    (out,). ``segments``: the input as concatenated parts, (old, new) width each (one
    part, all of it, when None); each old part goes to the start of its new part."""
    if old.dim() == 1:
        new[: old.shape[0]] = old
        return
    o, i = (1, 0) if transposed else (0, 1)
    segments = segments or [(old.shape[i], new.shape[i])]
    if sum(a for a, _ in segments) != old.shape[i] or sum(b for _, b in segments) != new.shape[i]:
        raise ValueError(f"input parts {segments} do not add up to {old.shape[i]} -> {new.shape[i]}")
    rows = [slice(None)] * new.dim()
    rows[o] = slice(0, old.shape[o])
    src = dst = 0
    for a, b in segments:
        rows[i] = slice(dst, dst + a)
        new[tuple(rows)] = old.narrow(i, src, a)
        rows[i] = slice(dst + a, dst + b)
        new[tuple(rows)] = 0
        src, dst = src + a, dst + b


class GeneratorOutput(NamedTuple):
    """Everything the losses need; inference uses ``image`` and ``attention[-1]``.

    ``image`` (B, 3, H, W); ``side2``/``side4`` at 1/2 and 1/4 of H, W; ``attention`` one
    (B, 1, H, W) map per recurrent step; ``fine_gate`` (B, 1, H, W) the per-pixel factor on
    the gate before it is clamped to [0, 1], ``proposal`` (B, 3, H, W) the correction the
    cell gate lets through, which that factor scales, ``affine`` (B, 6) the global
    head's gain and offset per colour, and ``veil`` (B, 1) the veil head's estimate with
    ``veil_logit`` (B, 1) its logit of "veiled", None without those heads.
    """

    image: torch.Tensor
    side2: torch.Tensor
    side4: torch.Tensor
    attention: list[torch.Tensor]
    fine_gate: torch.Tensor | None = None
    affine: torch.Tensor | None = None
    proposal: torch.Tensor | None = None
    veil: torch.Tensor | None = None
    veil_logit: torch.Tensor | None = None


class Generator(nn.Module):
    """The AttentiveGAN generator: ARN attention maps, then the contextual autoencoder."""

    def __init__(self, config: GeneratorConfig | None = None) -> None:
        super().__init__()
        self.config = config or GeneratorConfig()
        r = self.config.unshuffle
        channels = 3 * r * r
        self.arn = AttentiveRecurrentNet(
            channels, self.config.arn_width, self.config.steps, self.config.res_blocks
        )
        self.autoencoder = ContextualAutoencoder(
            channels, self.config.ae_width, self.config.dilations, self.config.input_skip,
            fine_channels=r * r if self.config.fine_gate else 0,
            fine_width=self.config.fine_width, fine_depth=self.config.fine_depth,
            fine_pixel=self.config.fine_pixel,
            global_affine=self.config.global_affine, affine_features=self.config.affine_features,
        )
        self.veil = VeilHead(channels + 1, self.config.veil_width) if self.config.veil_head else None

    def head_parameters(self) -> list[nn.Parameter]:
        """The optional heads' weights (fine gate, global affine, veil), each a no-op at
        first: grown onto a trained net, they start from nothing and may need another
        learning rate."""
        ae = self.autoencoder
        return [p for head in (ae.fine, ae.affine, self.veil) if head is not None for p in head.parameters()]

    def embed(self, narrow: "Generator") -> None:
        """Copy a trained ``narrow`` generator into this one, whose autoencoder may be wider
        (``ae_width``), so that this net computes exactly what ``narrow`` does: a trained
        net grown for more capacity starts at its old quality instead of from scratch.

        Each layer's extra output channels keep their random initialisation; the weights
        from extra input channels into old output channels are zero, so the old channels,
        and the outputs, are unchanged until training moves those zeros (their gradient is
        not zero: the new channels' activations are not). All other shapes must match."""
        mine, theirs = self.state_dict(), narrow.state_dict()
        segments = self.autoencoder.input_segments(narrow.autoencoder)
        for name, old in theirs.items():
            if name not in mine:
                raise ValueError(f"{name} is not a layer of this generator")
            new = mine[name]
            if new.shape == old.shape:
                new.copy_(old)
                continue
            layer = name.rsplit(".", 1)[0]
            grows = name.startswith("autoencoder.") and new.dim() == old.dim() and all(
                a >= b for a, b in zip(new.shape, old.shape)) and new.shape[2:] == old.shape[2:]
            if not grows:
                raise ValueError(f"{name}: {tuple(old.shape)} does not fit in {tuple(new.shape)}")
            _embed_channels(new, old, transposed=layer.split(".")[1].startswith("up"),
                            segments=segments.get(layer.removeprefix("autoencoder.")))

    def forward(self, image: torch.Tensor) -> GeneratorOutput:
        """image: (B, 3, H, W) in [0, 1], H and W multiples of ``config.multiple``."""
        r = self.config.unshuffle
        x = F.pixel_unshuffle(image, r) if r > 1 else image
        maps = self.arn(x)
        seen = torch.cat([x, maps[-1]], dim=1)
        out, side2, side4, fine, affine = self.autoencoder(seen)
        veil_logit, veil = (None, None) if self.veil is None else self.veil(  # trained by veil_loss alone
            seen.detach(), self.config.veil_threshold)
        proposal = None
        if self.config.gate_output:
            t = self.config.gate_threshold
            gate = ((maps[-1] - t) / (1 - t)).clamp(0, 1)
            if fine is not None:  # what the cell gate lets through, for the fine gate's loss
                proposal = gate * out  # one factor per pixel: repeat it over the 3 colours
                fine = 1 + fine  # unclamped for its loss: a clamp there stops its gradient
                gate = gate * fine.clamp(0, 1).repeat(1, 3, 1, 1)
            coarse = gate.mean(dim=1, keepdim=True) if fine is not None else gate
            out = x + gate * out
            side2 = F.avg_pool2d(x, 2) + F.avg_pool2d(coarse, 2) * side2
            side4 = F.avg_pool2d(x, 4) + F.avg_pool2d(coarse, 4) * side4
            if veil is not None:  # what the gate passes through unchanged loses the veil
                v = veil.detach() if self.training else veil
                out = out + (1 - gate) * (_unveil(x, v) - x)
                side2, side4 = (side + (1 - F.avg_pool2d(coarse, k)) * (_unveil(F.avg_pool2d(x, k), v)
                                                                       - F.avg_pool2d(x, k))
                                for side, k in ((side2, 2), (side4, 4)))
        if affine is not None:  # (B, 6): gain and offset per colour, on every pixel
            applied = affine.detach() if self.training else affine  # trained by affine_loss alone
            gain, offset = (a.repeat_interleave(r * r, dim=1)[..., None, None] for a in applied.chunk(2, 1))
            out, side2, side4 = (o + gain * xs + offset for o, xs in (
                (out, x), (side2, F.avg_pool2d(x, 2)), (side4, F.avg_pool2d(x, 4))))
        if r > 1:
            out, side2, side4 = (F.pixel_shuffle(t, r) for t in (out, side2, side4))
            maps = [F.interpolate(m, scale_factor=r, mode="bilinear", align_corners=False)
                    for m in maps]
        if fine is not None and r > 1:
            fine, proposal = F.pixel_shuffle(fine, r), F.pixel_shuffle(proposal, r)
        return GeneratorOutput(out, side2, side4, maps, fine, affine, proposal, veil, veil_logit)


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
