"""Denoiser: shapes, padding, Gaussian stages, self-ensembles and checkpoints (save, load, refuse)."""
from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from stream_denoise.config import GaussianStage
from stream_denoise.denoiser import Denoiser
from stream_denoise.errors import ModelError
from stream_denoise.models.attentive_gan import Generator, GeneratorConfig
from stream_denoise.models.weights import load_generator, save_generator

TINY = GeneratorConfig(arn_width=8, steps=2, res_blocks=1, ae_width=8, dilations=(2,), unshuffle=2)


@pytest.fixture
def generator() -> Generator:
    torch.manual_seed(0)
    return Generator(TINY)


def test_shapes_dtype_and_odd_sizes(generator):
    frames = np.random.default_rng(0).integers(0, 256, (3, 361, 641, 3), dtype=np.uint8)
    result = Denoiser(generator).process(frames, attention=True)
    assert result.images.shape == frames.shape and result.images.dtype == np.uint8
    assert result.attention.shape == (3, 361, 641) and result.attention.dtype == np.uint8


def test_batch_items_are_independent(generator):
    """A frame's result does not depend on what else is in its batch (or on padding)."""
    frames = np.random.default_rng(1).integers(0, 256, (4, 40, 56, 3), dtype=np.uint8)
    den = Denoiser(generator)
    together = den(frames)
    alone = np.concatenate([den(frames[i:i + 1]) for i in range(4)])
    assert np.abs(together.astype(int) - alone).max() <= 1


def test_gaussian_stages_are_applied(generator):
    frames = np.random.default_rng(2).integers(0, 256, (1, 48, 48, 3), dtype=np.uint8)
    plain = Denoiser(generator)(frames)
    blurred = Denoiser(generator, post=GaussianStage(sigma=2.0))(frames)
    assert blurred.std() < plain.std()


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
    from stream_denoise.train.trainer import psnr_ssim

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


@pytest.mark.parametrize("kind,margin,worst", [("gaussian", 3.0, 3.0), ("salt_pepper", 12.0, 12.0),
                                               ("dust", 0.0, -0.5)])
def test_bundled_lite_default_chain_on_noise_and_dust(bikes, kind, margin, worst):
    """The default chain (impulse median + noise-adaptive pre-blur + lite) on held-out
    frames, four random layouts: a clear gain on sensor noise, light salt-and-pepper
    included (the median takes it, where the blur alone gained ~0.5 dB on 2 layouts of 4);
    faint dust not made worse on average (one layout of four dips to -0.3 dB)."""
    import itertools

    from stream_denoise.degrade import DegradeConfig, degrade
    from stream_denoise.io.sources import open_source
    from stream_denoise.train.trainer import psnr_ssim

    with open_source(bikes) as src:
        clean = np.stack([f.image for f in itertools.islice(src, 240, 248)])
    params = [DegradeConfig().params(kind)]
    den = Denoiser.from_pretrained("lite")
    to = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).float() / 255  # noqa: E731
    gains = []
    for seed in (777, 778, 779, 780):
        noisy = np.stack([degrade(c, params, seed=seed, t=i)[0] for i, c in enumerate(clean)])
        before, _ = psnr_ssim(to(noisy), to(clean))
        after, _ = psnr_ssim(to(den(noisy)), to(clean))
        gains.append(after - before)
    assert np.mean(gains) > margin and min(gains) > worst, gains


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
    from stream_denoise.train.trainer import psnr_ssim

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
    for plain, two, four in gains:  # measured (v8): +0.29 to +0.45 dB for 2 views, +0.41 to +0.61 for 4
        assert two > plain + 0.2 and four > plain + 0.2, gains
    assert psnr_ssim(to(dens[2](clean)), to(clean))[0] > 50.0


def test_the_bundled_lites_veil_head_lifts_snows_veil_and_leaves_clean_frames_alone(bikes):
    """v10's veil head on held-out frames (README, "The bundled models"): with it, a snowy
    layout comes out cleaner than with ``veil=False``; a clean frame is not touched."""
    import itertools

    from stream_denoise.degrade import DegradeConfig, degrade
    from stream_denoise.io.sources import open_source
    from stream_denoise.train.trainer import psnr_ssim

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
