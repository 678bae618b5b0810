"""Training-only surgery on a generator: which parameters are the optional heads', and
growing a trained net into a wider one with the same output (:func:`embed`)."""
from __future__ import annotations

import torch
from torch import nn

from ..models.generator import ContextualAutoencoder, Generator
from ..models.heads import PixelGate


def head_parameters(generator: Generator) -> list[nn.Parameter]:
    """The optional heads' weights (fine gate, global affine, veil), each a no-op at
    first: grown onto a trained net, they start from nothing and may need another
    learning rate."""
    ae = generator.autoencoder
    return [p for head in (ae.fine, ae.affine, generator.veil) if head is not None for p in head.parameters()]


def embed(wide: Generator, narrow: Generator) -> None:
    """Copy a trained ``narrow`` generator into ``wide``, whose autoencoder (``ae_width``) or
    attentive-recurrent net (``arn_width``) may be wider, so that ``wide`` computes exactly
    what ``narrow`` does: a trained net grown for more capacity starts at its old quality
    instead of from scratch.

    Each layer's extra output channels keep their random initialisation; the weights
    from extra input channels into old output channels are zero, so the old channels,
    and the outputs, are unchanged until training moves those zeros (their gradient is
    not zero: the new channels' activations are not). All other shapes must match."""
    mine, theirs = wide.state_dict(), narrow.state_dict()
    segments = {f"autoencoder.{k}": v for k, v in input_segments(wide.autoencoder, narrow.autoencoder).items()}
    # Each LSTM gate reads [features, hidden]: both parts grow with the ARN.
    n, w = narrow.arn.width, wide.arn.width
    segments |= {f"arn.lstm.gate_{g}": [(n, w), (n, w)] for g in "ifgo"}
    for name, old in theirs.items():
        if name not in mine:
            raise ValueError(f"{name} is not a layer of this generator")
        new = mine[name]
        if new.shape == old.shape:
            new.copy_(old)
            continue
        layer = name.rsplit(".", 1)[0]
        grows = name.startswith(("autoencoder.", "arn.")) and new.dim() == old.dim() and all(
            a >= b for a, b in zip(new.shape, old.shape)) and new.shape[2:] == old.shape[2:]
        if not grows:
            raise ValueError(f"{name}: {tuple(old.shape)} does not fit in {tuple(new.shape)}")
        _embed_channels(new, old, transposed=layer.startswith("autoencoder.up"),
                        segments=segments.get(layer))


def input_segments(wide: ContextualAutoencoder,
                   narrow: ContextualAutoencoder) -> dict[str, list[tuple[int, int]]]:
    """The heads' first layers read the features beside other inputs: their input
    parts as (width in ``narrow``, width in ``wide``), for :func:`embed`."""
    (n1, n4), (w1, w4) = ((a.enc1.out_channels, a.enc4.out_channels) for a in (narrow, wide))
    parts = {}
    if isinstance(wide.fine, nn.Sequential) and not isinstance(wide.fine, PixelGate):
        rest = wide.fine[0].in_channels - w1 // 2
        parts["fine.0"] = [(n1 // 2, w1 // 2), (rest, rest)]
    if wide.affine is not None:
        pooled = [(n4, w4), (6, 6)]
        parts["affine.0"] = pooled if wide.affine_features == 1 else pooled + [(n4, w4), (4, 4)]
    return parts


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
