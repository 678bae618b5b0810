"""AttentiveGAN (Qian et al., CVPR 2018): the generator as a pure nn.Module.

The generator is an attentive-recurrent network (ARN: residual blocks + ConvLSTM run for
``steps`` steps, each emitting an attention map) feeding a contextual autoencoder with
multi-scale side outputs. One module serves training (all maps and side outputs) and
inference (``Generator.forward`` returns them all; callers take what they need).

The architecture is a function of a few numbers (:class:`GeneratorConfig`), so the
``paper`` preset (the paper's exact layer list) and the CPU-sized ``lite`` preset are the
same code. Images are float tensors ``(B, 3, H, W)`` in [0, 1]; H and W must be multiples
of :meth:`GeneratorConfig.multiple` (the denoiser pads and crops). The optional heads are
in :mod:`stream_denoise.models.heads`, the discriminator in
:mod:`stream_denoise.models.discriminator`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .heads import PixelGate, VeilHead, _attention_spread, _conv, _levels, _unveil


@dataclass(frozen=True)
class GeneratorConfig:
    """The numbers that fix the generator's shape. Why each default is what it is (the
    experiments, v3 onwards) is in docs/models.md.

    ``unshuffle`` > 1 runs the whole network on a pixel-unshuffled image (``r*r*3``
    channels at 1/r resolution): about r*r less cost per frame, what makes real time on a
    CPU reachable. ``gate_output``: the autoencoder predicts a residual applied only where
    the (supervised) attention map is on, so away from damage the output is the input and
    a small net need not learn the identity first. ``input_skip``: a zero-initialised conv
    from the autoencoder's input to its output, so per-pixel noise can pass the narrow
    finest decoder level under ``unshuffle``. ``gate_threshold``: a dead zone for the gate
    (attention below it counts as clean; the gate rises linearly from it to 1).

    The optional heads (:mod:`stream_denoise.models.heads`) are zero-initialised at their
    output, so a trained net grown with one keeps its output, and each is trained by its
    own loss, never by the output's error. ``fine_gate`` scales the per-cell gate per pixel
    by ``clamp(1 + f, 0, 1)`` (``fine_depth`` 3x3 convs of ``fine_width`` channels, then a
    1x1 conv; with ``fine_pixel`` at pixel resolution, ``PixelGate``; trained by
    ``losses.fine_gate_loss``). ``global_affine``: a per-image gain and offset per colour
    on every pixel outside the gate, from the pooled bottleneck and each colour's mean and
    dark level (``affine_features`` 2 adds the max-pooled bottleneck and the attention
    map's spread; ``losses.affine_loss``). ``veil_head``: ``VeilHead`` estimates a light
    veil (snow's air light) and removes it where the gate passes the input through
    (``losses.veil_loss``); ``veil_threshold`` is its dead zone, as ``gate_threshold`` is
    the gate's.

    ``ae_width`` of a trained net can be grown: ``stream_denoise.train.surgery.embed``
    puts it into a wider one with the same output.
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
        self, x: torch.Tensor, h: torch.Tensor | None = None, c: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step; ``h`` and ``c`` None for the first, a zero state: the gates then read
        ``x`` alone (the same values, half the gates' convolution work) and nothing is forgotten."""
        if h is None or c is None:
            i, g, o = (F.conv2d(x, conv.weight[:, :x.shape[1]], conv.bias, padding=conv.padding)
                       for conv in (self.gate_i, self.gate_g, self.gate_o))
            c = torch.sigmoid(i) * torch.tanh(g)
            return torch.sigmoid(o) * torch.tanh(c), c
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
        b, c, h, w = x.shape
        attention = x.new_full((b, 1, h, w), 0.5)
        hidden = cell = None  # a zero state
        maps = []
        # The head is linear in [x, attention] and x is the same at every step: its part is
        # convolved once, the map's (one channel) at each step. (Concatenated with x, the
        # first map, made in the default layout, turned the whole net from channels_last to
        # it: 23 % slower in bfloat16 on the CPU.)
        from_x = F.conv2d(x, self.head.weight[:, :c], self.head.bias, padding=self.head.padding)
        for _ in range(self.steps):
            feat = self.blocks(F.relu(from_x + F.conv2d(attention, self.head.weight[:, c:], padding=self.head.padding)))
            hidden, cell = self.lstm(feat, hidden, cell)
            attention = self.to_map(hidden)
            maps.append(attention)
        return maps


class AutoencoderOutput(NamedTuple):
    """The output and side outputs at 1/2 and 1/4; ``fine`` (B, r*r, h, w) per-pixel gate
    corrections and ``affine`` (B, 6) gain and offset per colour, None when off."""

    image: torch.Tensor
    side2: torch.Tensor | None
    side4: torch.Tensor | None
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

    def forward(self, x: torch.Tensor, sides: bool = True) -> AutoencoderOutput:
        """``sides`` False: the side outputs None (inference does not read them)."""
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
        side4 = self.side4(y) if sides else None
        y = F.relu(self.up1(y)) + skip2
        y = F.relu(self.dec1(y))
        side2 = self.side2(y) if sides else None
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


class GeneratorOutput(NamedTuple):
    """Everything the losses need; inference uses ``image`` and ``attention[-1]``.

    ``image`` (B, 3, H, W); ``side2``/``side4`` at 1/2 and 1/4 of H, W; ``attention`` one
    (B, 1, H, W) map per recurrent step (with ``inference=True``: the sides None, and the
    last map alone); ``fine_gate`` (B, 1, H, W) the per-pixel factor on the gate before it
    is clamped to [0, 1], ``proposal`` (B, 3, H, W) the correction the cell gate lets
    through, which that factor scales, ``affine`` (B, 6) the global head's gain and offset
    per colour, and ``veil`` (B, 1) the veil head's estimate with ``veil_logit`` (B, 1) its
    logit of "veiled", None without those heads (and from ``inference=True``).
    """

    image: torch.Tensor
    side2: torch.Tensor | None
    side4: torch.Tensor | None
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

    def forward(self, image: torch.Tensor, *, inference: bool = False) -> GeneratorOutput:
        """image: (B, 3, H, W) in [0, 1], H and W multiples of ``config.multiple``.

        ``inference``: only what cleaning a frame needs, ``image`` and the last attention
        map (the side outputs None, ``attention`` that one map): the same values, 4 % less
        time at 640x360 on this CPU (benchmarks/README.md, "Where a frame's time goes").
        """
        r = self.config.unshuffle
        # A net cast to bfloat16 (the Denoiser does, on a CPU that has it) runs in it.
        dtype = self.arn.head.weight.dtype
        x = F.pixel_unshuffle(image.to(dtype), r) if r > 1 else image.to(dtype)
        maps = self.arn(x)
        seen = torch.cat([x, maps[-1]], dim=1)
        out, side2, side4, fine, affine = self.autoencoder(seen, sides=not inference)
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
            if inference:
                # The repair alone: the input is added at full size in its own precision
                # (below), so what the gate passes through stays exact in bfloat16 too. What
                # it passes loses the veil; a batch without one adds nothing for it (compiled,
                # the sum is taken anyway: a branch on data would break the graph).
                out = gate * out
                if veil is not None and (torch.compiler.is_compiling() or bool(veil.any())):
                    exact = F.pixel_unshuffle(image, r) if r > 1 else image
                    out = out.to(image.dtype) + (1 - gate) * (_unveil(exact, veil.to(image.dtype)) - exact)
            else:
                out = x + gate * out
                if veil is not None:  # what the gate passes through unchanged loses the veil
                    v = veil.detach() if self.training else veil
                    out = out + (1 - gate) * (_unveil(x, v) - x)
                side2, side4 = (F.avg_pool2d(x, k) + F.avg_pool2d(coarse, k) * side
                                for side, k in ((side2, 2), (side4, 4)))
                if veil is not None:
                    side2, side4 = (side + (1 - F.avg_pool2d(coarse, k)) * (_unveil(F.avg_pool2d(x, k), v)
                                                                           - F.avg_pool2d(x, k))
                                    for side, k in ((side2, 2), (side4, 4)))
        if affine is not None:  # (B, 6): gain and offset per colour, on every pixel
            applied = affine.detach() if self.training else affine  # trained by affine_loss alone
            gain, offset = (a.repeat_interleave(r * r, dim=1)[..., None, None] for a in applied.chunk(2, 1))
            out = out + gain * x + offset
            if not inference:
                side2, side4 = (o + gain * F.avg_pool2d(x, k) + offset for o, k in ((side2, 2), (side4, 4)))
        if inference:
            last = maps[-1]
            if r > 1:
                out, last = F.pixel_shuffle(out, r), F.interpolate(last, scale_factor=r, mode="bilinear",
                                                                   align_corners=False)
            if self.config.gate_output:
                out = image + out.to(image.dtype)
            return GeneratorOutput(out, None, None, [last])
        if r > 1:
            out, side2, side4 = (F.pixel_shuffle(t, r) for t in (out, side2, side4))
            maps = [F.interpolate(m, scale_factor=r, mode="bilinear", align_corners=False)
                    for m in maps]
        if fine is not None and r > 1:
            fine, proposal = F.pixel_shuffle(fine, r), F.pixel_shuffle(proposal, r)
        return GeneratorOutput(out, side2, side4, maps, fine, affine, proposal, veil, veil_logit)
