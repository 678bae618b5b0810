"""Denoiser: shapes, padding, Gaussian stages, self-ensembles and checkpoints (save, load, refuse)."""
from __future__ import annotations

import os
import pickle
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from stream_denoise.config import GaussianStage
from stream_denoise.denoiser import Denoiser
from stream_denoise.errors import ModelError
from stream_denoise.filters import gaussian_blur, remove_impulses
from stream_denoise.models.generator import Generator, GeneratorConfig
from stream_denoise.models.weights import load_generator, save_generator

TINY = GeneratorConfig(arn_width=8, steps=2, res_blocks=1, ae_width=8, dilations=(2,), unshuffle=2)


@pytest.fixture
def generator() -> Generator:
    torch.manual_seed(0)
    return Generator(TINY)


@pytest.fixture
def closed() -> Generator:
    """A gated generator whose attention map is -1 everywhere: the gate never opens, so the
    net returns its input exactly (x + 0 * residual), whatever its other weights."""
    torch.manual_seed(0)
    generator = Generator(replace(TINY, gate_output=True, gate_threshold=0.3))
    with torch.no_grad():
        generator.arn.to_map.weight.zero_()
        generator.arn.to_map.bias.fill_(-1.0)
    return generator


def _shapes_seen(generator: Generator) -> list[tuple[int, ...]]:
    """Records the shape of every input the generator is given."""
    seen: list[tuple[int, ...]] = []
    generator.register_forward_pre_hook(lambda _, args: seen.append(tuple(args[0].shape)))
    return seen


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_odd_sizes_are_padded_and_cropped_back_exactly(closed, precision):
    """361x641 is no multiple of TINY's 8: the net gets the frame padded to 368x648, and
    what comes back is cropped to the very pixels that went in (a closed gate is the
    identity, so any shift, flip or stray padding in the output shows). In bf16 too:
    what the gate passes through stays float32, bit for bit."""
    frames = np.random.default_rng(0).integers(0, 256, (3, 361, 641, 3), dtype=np.uint8)
    seen = _shapes_seen(closed)
    result = Denoiser(closed, device="cpu", precision=precision).process(frames, attention=True)
    assert seen == [(3, 3, 368, 648)]
    assert result.images.dtype == np.uint8 and np.array_equal(result.images, frames)
    assert result.attention.shape == (3, 361, 641) and not result.attention.any()  # map -1: clamped to 0


def test_auto_precision_is_bf16_where_the_cpu_has_it(monkeypatch):
    """auto: fp16 on CUDA, bf16 on a CPU with native bf16, float32 on other CPUs; named
    precisions are taken as named."""
    from stream_denoise import denoiser

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    for native, want in ((True, torch.bfloat16), (False, None)):
        monkeypatch.setattr(torch.cpu, "get_capabilities", lambda n=native: {"avx512_bf16": n, "amx_bf16": False})
        assert denoiser._autocast_dtype("auto", cpu) is want
        assert denoiser._autocast_dtype("fp32", cpu) is None
        assert denoiser._autocast_dtype("bf16", cpu) is torch.bfloat16
        assert denoiser._autocast_dtype("auto", cuda) is torch.float16
    monkeypatch.delattr(torch.cpu, "get_capabilities")  # a torch without it: float32
    assert denoiser._autocast_dtype("auto", cpu) is None


def test_batch_items_are_independent(generator):
    """A frame's result does not depend on what else is in its batch (43x61 is padded)."""
    frames = np.random.default_rng(1).integers(0, 256, (4, 43, 61, 3), dtype=np.uint8)
    den = Denoiser(generator)
    together = den(frames)
    alone = np.concatenate([den(frames[i:i + 1]) for i in range(4)])
    assert np.abs(together.astype(int) - alone).max() <= 1


def test_each_stage_is_what_it_names(closed):
    """Around a closed gate (the identity), the chain is exactly its filters: the impulse
    median, the pre-filter and the post-filter each equal the function they name, with
    the sigma and kernel size given, in that order."""
    frames = np.random.default_rng(2).integers(0, 256, (2, 45, 61, 3), dtype=np.uint8)
    frames[:, ::7, ::5] = 255  # impulses for the median
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    to8 = lambda t: t.clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()  # noqa: E731
    cases = {
        "pre": (dict(pre=GaussianStage(sigma=1.5)), gaussian_blur(x, 1.5)),
        "post": (dict(post=GaussianStage(sigma=2.0, ksize=5)), gaussian_blur(x, 2.0, 5)),
        "impulse": (dict(impulse=True), remove_impulses(x)),
        "all": (dict(impulse=True, pre=GaussianStage(sigma=0.8), post=GaussianStage(sigma=1.2)),
                gaussian_blur(gaussian_blur(remove_impulses(x), 0.8), 1.2)),
    }
    for name, (stages, want) in cases.items():
        got = Denoiser(closed, **stages)(frames)
        assert np.array_equal(got, to8(want)), name
        assert (got != frames).mean() > 0.03, name  # and the stage did change the frames
    assert np.array_equal(Denoiser(closed)(frames), frames)  # no stage: nothing changes


def test_rejects_wrong_input(generator):
    with pytest.raises(ValueError, match=r"uint8 array \(N, H, W, 3\)"):
        Denoiser(generator)(np.zeros((2, 8, 8, 3), np.float32))


def test_safetensors_round_trip(generator, tmp_path):
    path = save_generator(tmp_path / "g.safetensors", generator, {"trained_on": "nothing"}, half=False)
    loaded, summary = load_generator(path)
    assert summary == {"trained_on": "nothing"}
    assert loaded.config == TINY
    x = torch.rand(1, 3, 32, 32)
    with torch.inference_mode():
        assert torch.equal(loaded(x).image, generator.eval()(x).image)


def test_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"generator": Evil(), "arch": {}}, f)
    with pytest.raises(ModelError, match="refused to load"):
        load_generator(path)
    assert not marker.exists()


def test_tensors_that_do_not_match_their_config_are_refused(generator, tmp_path):
    path = save_generator(tmp_path / "g.safetensors", generator)
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta["arch"] = meta["arch"].replace('"arn_width": 8', '"arn_width": 16')
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(ModelError, match="do not match the recorded architecture"):
        load_generator(path)


def test_foreign_file_is_refused(tmp_path):
    path = tmp_path / "x.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(ModelError, match="not a stream-denoise generator"):
        load_generator(path)


def test_bundled_lite_removes_synthetic_raindrops(bikes):
    """The shipped model on frames it never trained on (the held-out end of bikes.mp4)
    with drops from an unseen seed: a clear PSNR gain, and clean frames stay clean."""
    import itertools

    from stream_denoise.degrade import Raindrops
    from stream_denoise.io.sources import open_source
    from stream_denoise.metrics import psnr_ssim

    with open_source(bikes) as src:
        clean = np.stack([f.image for f in itertools.islice(src, 240, 248)])
    noisy = np.stack([Raindrops().apply(c, seed=12345, t=i) for i, c in enumerate(clean)])
    den = Denoiser.from_pretrained("lite")
    to = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).float() / 255  # noqa: E731
    before, _ = psnr_ssim(to(noisy), to(clean))
    after, _ = psnr_ssim(to(den(noisy)), to(clean))
    assert after > before + 3.0, (before, after)
    untouched, _ = psnr_ssim(to(den(clean)), to(clean))
    assert untouched > 38.0


def test_bf16_on_a_cpu_runs_a_bfloat16_copy_of_the_net(bikes):
    """``bf16`` on a CPU casts a copy of the net to bfloat16 instead of autocasting around
    every op (faster: benchmarks/README.md, "Precision"); the caller's net stays float32.
    The bundled lite on held-out frames with drops comes out close to
    float32 (measured: 57.6 dB between the two, at most 4 levels apart)."""
    import itertools

    from stream_denoise.degrade import Raindrops
    from stream_denoise.io.sources import open_source
    from stream_denoise.metrics import psnr

    generator, _ = load_generator("lite")
    bf16 = Denoiser(generator, device="cpu", precision="bf16")
    assert next(bf16.generator.parameters()).dtype == torch.bfloat16 and bf16.autocast_dtype is None
    assert next(generator.parameters()).dtype == torch.float32
    with open_source(bikes) as src:
        clean = np.stack([f.image for f in itertools.islice(src, 240, 242)])
    noisy = np.stack([Raindrops().apply(c, seed=12345, t=i) for i, c in enumerate(clean)])
    fp32 = Denoiser(generator, device="cpu", precision="fp32")
    assert psnr(bf16(noisy), fp32(noisy)) > 50.0


# Measured on these frames with lite v12 (CPU, float32; bf16 within 0.02 dB), gain over the same
# chain around an identity generator, per layout (seeds 777-780):
#   gaussian     +5.10, +5.09, +4.62, +6.05 dB (mean +5.21; v10 +7.43); the identity chain: +0.00 to +0.01
#   dust         -0.38, -0.94, +2.19, +1.95 dB (mean +0.71; v10 +1.24); the identity chain: 0.00
#   salt_pepper  -1.47, -1.25, -4.95, -4.19 dB (mean -2.97; v10 -4.83): the median alone gains +25.47 to
#                +26.26 dB and leaves frames nearly clean, where the generator's cost on clean
#                pixels shows (it takes clean frames to 53.6-56.6 dB).
CHAIN_VS_IDENTITY = {  # kind: (mean, worst layout) of the gain over the identity chain, dB
    "gaussian": (4.8, 4.3),
    "dust": (0.4, -1.3),
    "salt_pepper": (-3.6, -5.6),
}


@pytest.mark.parametrize("kind", list(CHAIN_VS_IDENTITY))
def test_bundled_lite_default_chain_on_noise_and_dust(bikes, closed, kind):
    """The default chain (impulse median + noise-adaptive pre-blur + lite) on held-out
    frames, four random layouts, against the same chain around an identity generator, so
    that only the generator's part counts: a clear gain on Gaussian noise, faint dust
    better on average (two layouts of four dip, to -0.9 dB). Light salt-and-pepper is the
    median's: it gains 25 dB or more on every layout; the generator then costs a few dB,
    no more than measured (CHAIN_VS_IDENTITY)."""
    import itertools

    from stream_denoise.config import FilterConfig
    from stream_denoise.degrade import DegradeConfig, degrade
    from stream_denoise.io.sources import open_source
    from stream_denoise.metrics import psnr_ssim

    with open_source(bikes) as src:
        clean = np.stack([f.image for f in itertools.islice(src, 240, 248)])
    params = [DegradeConfig().params(kind)]
    den = Denoiser.from_pretrained("lite")
    f = FilterConfig()
    assert f.impulse and den.impulse  # the default chain, on both sides
    identity = Denoiser(closed, pre=f.pre, post=f.post, impulse=f.impulse)
    to = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).float() / 255  # noqa: E731
    gains, alone = [], []
    for seed in (777, 778, 779, 780):
        noisy = np.stack([degrade(c, params, seed=seed, t=i)[0] for i, c in enumerate(clean)])
        before, _ = psnr_ssim(to(noisy), to(clean))
        with_lite, _ = psnr_ssim(to(den(noisy)), to(clean))
        without, _ = psnr_ssim(to(identity(noisy)), to(clean))
        gains.append(with_lite - without)
        alone.append(without - before)
    mean, worst = CHAIN_VS_IDENTITY[kind]
    assert np.mean(gains) > mean and min(gains) > worst, (gains, alone)
    if kind == "salt_pepper":
        assert min(alone) > 25.0, alone  # the median's work
    else:
        assert max(np.abs(alone)) < 0.05, alone  # nothing here for the median or the pre-blur


def test_ensemble_averages_the_views_of_each_frame(generator):
    """Views: as is, shifted down-right by half a cell (1 px at TINY's unshuffle 2), and
    both mirrored; each repair is mapped back before the average."""
    frames = np.random.default_rng(3).integers(0, 256, (2, 40, 56, 3), dtype=np.uint8)
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    images, maps = [], []
    with torch.no_grad():
        for shift, flip in [(0, False), (1, False), (0, True), (1, True)]:
            y = x.flip(-1) if flip else x
            out = generator.eval()(F.pad(y, (shift, 8 - shift, shift, 8 - shift), mode="replicate")
                                   if shift else y)
            im, a = (t[..., shift:shift + 40, shift:shift + 56] for t in (out.image, out.attention[-1]))
            images.append(im.flip(-1) if flip else im)
            maps.append(a.flip(-1) if flip else a)
    to8 = lambda t: t.clamp(0, 1).mul(255).round().numpy()  # noqa: E731
    for n in (1, 2, 4):
        result = Denoiser(generator, ensemble=n).process(frames, attention=True)
        image = to8((sum(images[:n]) / n).permute(0, 2, 3, 1))
        att = to8((sum(maps[:n]) / n)[:, 0])
        assert np.abs(result.images.astype(int) - image).max() <= 1, n
        assert np.abs(result.attention.astype(int) - att).max() <= 1, n
    assert np.abs(to8(images[0]).astype(int) - to8(images[1])).max() > 1  # the views differ
    with pytest.raises(ValueError, match="ensemble must be one of"):
        Denoiser(generator, ensemble=3)


@pytest.mark.parametrize("kind", ["raindrops", "snow"])
def test_ensemble_cleans_weather_better_with_the_bundled_lite(bikes, kind):
    """The self-ensemble's worth on held-out frames, each of two layouts (README, "The
    bundled models"); clean frames stay clean."""
    import itertools

    from stream_denoise.degrade import DegradeConfig, degrade
    from stream_denoise.io.sources import open_source
    from stream_denoise.metrics import psnr_ssim

    with open_source(bikes) as src:
        clean = np.stack([f.image for f in itertools.islice(src, 240, 248)])
    dens = [Denoiser.from_pretrained("lite", ensemble=n) for n in (1, 2, 4)]
    to = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).float() / 255  # noqa: E731
    gains = []
    for seed in (777, 778):
        noisy = np.stack([degrade(c, [DegradeConfig().params(kind)], seed=seed, t=i)[0]
                          for i, c in enumerate(clean)])
        before = psnr_ssim(to(noisy), to(clean))[0]
        gains.append([psnr_ssim(to(d(noisy)), to(clean))[0] - before for d in dens])
    # Measured (v12), plain / 2 views / 4 views: raindrops +6.71 / +6.68 / +7.10 and +5.44 / +5.39 /
    # +6.35 dB; snow +7.03 / +7.44 / +7.97 and +5.78 / +6.06 / +6.49. Two views help snow only.
    for plain, two, four in gains:
        assert four > plain + 0.3 and two > plain - 0.1, gains
        if kind == "snow":
            assert two > plain + 0.2, gains
    assert psnr_ssim(to(dens[2](clean)), to(clean))[0] > 50.0


def test_the_bundled_lites_veil_head_lifts_snows_veil_and_leaves_clean_frames_alone(bikes):
    """v10's veil head on held-out frames (README, "The bundled models"): with it, a snowy
    layout comes out cleaner than with ``veil=False``; a clean frame is not touched."""
    import itertools

    from stream_denoise.degrade import DegradeConfig, degrade
    from stream_denoise.io.sources import open_source
    from stream_denoise.metrics import psnr_ssim

    with open_source(bikes) as src:
        clean = np.stack([f.image for f in itertools.islice(src, 240, 248)])
    with_veil, without = Denoiser.from_pretrained("lite"), Denoiser.from_pretrained("lite", veil=False)
    assert with_veil.generator.veil is not None and without.generator.veil is None
    to = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).float() / 255  # noqa: E731
    snow = DegradeConfig().params("snow")
    noisy = np.stack([degrade(c, [snow], seed=777, t=i)[0] for i, c in enumerate(clean)])
    gain = psnr_ssim(to(with_veil(noisy)), to(clean))[0] - psnr_ssim(to(without(noisy)), to(clean))[0]
    assert gain > 0.5, (gain, snow.veil_share(777))  # a 2.7 % veil
    assert np.array_equal(with_veil(clean), without(clean))


@pytest.mark.slow  # Inductor compiles four graphs: about a minute on 2 cores
def test_compiled_generator_matches_eager(generator):
    """--compile (torch.compile, Inductor on the CPU): the same frames as eager within one
    grey level, at two sizes (the second recompiles), in float32 and bf16."""
    frames = np.random.default_rng(5).integers(0, 256, (2, 40, 56, 3), dtype=np.uint8)
    other = np.random.default_rng(6).integers(0, 256, (1, 36, 44, 3), dtype=np.uint8)
    for precision in ("fp32", "bf16"):
        eager = Denoiser(generator, device="cpu", precision=precision)
        compiled = Denoiser(generator, device="cpu", precision=precision, compile="default")
        assert compiled._net is not compiled.generator  # it really is the compiled module
        for batch in (frames, other):
            diff = np.abs(compiled(batch).astype(int) - eager(batch))
            assert diff.max() <= 1, (precision, diff.max())
