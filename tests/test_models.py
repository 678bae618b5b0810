"""The AttentiveGAN modules: the paper's exact size, shapes, and a training step."""
from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch

from stream_denoise.models.discriminator import Discriminator
from stream_denoise.models.generator import PRESETS, Generator, GeneratorConfig
from stream_denoise.train.surgery import embed
from tests.conftest import package_data


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A real photo (scikit-image's astronaut), RGB."""
    bgr = cv2.imread(str(package_data("skimage", "data", "astronaut.png")))
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)[:200, :264]


def conv(k: int, cin: int, cout: int) -> int:
    """Weights plus biases of a k x k convolution (or transposed convolution)."""
    return k * k * cin * cout + cout


def test_paper_generator_has_the_papers_parameter_count():
    # Derived by hand from the layer list in Qian et al. (CVPR 2018), section 4.
    arn = (
        conv(3, 4, 32)                 # input image + previous attention map -> 32
        + 5 * 2 * conv(3, 32, 32)      # 5 residual blocks of two 3x3 convs
        + 4 * conv(3, 64, 32)          # ConvLSTM gates i, f, g, o over [features, h]
        + conv(3, 32, 1)               # attention map
    )
    autoencoder = (
        conv(5, 4, 64)                 # [image, A_N] -> 64
        + conv(3, 64, 128) + conv(3, 128, 128)          # stride 2, then 128 -> 128
        + conv(3, 128, 256) + 2 * conv(3, 256, 256)     # stride 2, then two 256 -> 256
        + 4 * conv(3, 256, 256)        # dilated 2, 4, 8, 16
        + 2 * conv(3, 256, 256)
        + conv(4, 256, 128) + conv(3, 128, 128)         # transposed x2 up, conv
        + conv(4, 128, 64) + conv(3, 64, 32) + conv(3, 32, 3)
        + conv(3, 256, 3) + conv(3, 128, 3)             # side outputs at 1/4 and 1/2
    )
    assert arn == 167_809 and autoencoder == 6_076_553
    generator = Generator(PRESETS["paper"])
    assert sum(p.numel() for p in generator.parameters()) == arn + autoencoder
    assert sum(p.numel() for p in generator.arn.parameters()) == arn


@pytest.mark.parametrize("size", [(64, 64), (360, 640)])
def test_lite_forward_shapes(size):
    cfg = PRESETS["lite"]
    h, w = (s + (-s) % cfg.multiple for s in size)
    generator = Generator(cfg).eval()
    with torch.inference_mode():
        out = generator(torch.rand(2, 3, h, w))
    assert out.image.shape == (2, 3, h, w)
    assert out.side2.shape == (2, 3, h // 2, w // 2)
    assert out.side4.shape == (2, 3, h // 4, w // 4)
    assert len(out.attention) == cfg.steps
    assert all(a.shape == (2, 1, h, w) for a in out.attention)
    assert torch.isfinite(out.image).all()


@pytest.mark.parametrize("head", ["bundled", "global_affine", "plain"])
@pytest.mark.parametrize("autocast", [False, True])
def test_inference_gives_the_full_forwards_image_and_last_map(photo, head, autocast):
    """``inference=True`` skips the side outputs and the earlier maps, nothing else: on a
    real photo, the bundled lite (fine gate and veil head) and other heads give the same
    image and last map bit for bit, in float32 and under bf16 autocast."""
    from stream_denoise.models.weights import load_generator

    generator, _ = load_generator("lite")
    if head != "bundled":
        cfg = replace(generator.config, global_affine=head == "global_affine", fine_gate=False,
                      veil_head=False, gate_threshold=0.0)  # untrained: no dead zone, so the gate opens
        torch.manual_seed(0)
        generator = Generator(cfg)
    generator.eval()
    m = generator.config.multiple
    h, w = (s - s % m for s in photo.shape[:2])
    x = torch.from_numpy(photo[:h, :w].copy()).permute(2, 0, 1)[None].float() / 255
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        full, lean = generator(x), generator(x, inference=True)
    assert torch.equal(full.image, lean.image) and torch.equal(full.attention[-1], lean.attention[0])
    assert len(lean.attention) == 1 and lean.side2 is None and lean.side4 is None
    assert not torch.equal(full.image, x)  # the model did something to compare


def test_the_first_convlstm_step_from_a_zero_state_is_the_full_step():
    """The ARN's first step skips the convolution over a zero hidden state (half the gates'
    work): the same state as the full step from zeros, and its gradients reach the gates."""
    from stream_denoise.models.generator import ConvLSTMCell

    torch.manual_seed(0)
    cell = ConvLSTMCell(8)
    x = torch.randn(2, 8, 12, 20, requires_grad=True)
    zeros = torch.zeros(2, 8, 12, 20)
    h, c = cell(x)
    h_full, c_full = cell(x, zeros, zeros)
    assert torch.allclose(h, h_full, atol=1e-6) and torch.allclose(c, c_full, atol=1e-6)
    assert h.abs().mean() > 0.01  # a state to compare
    h.sum().backward()
    assert all(conv.weight.grad.abs().sum() > 0 for conv in (cell.gate_i, cell.gate_g, cell.gate_o))
    assert x.grad.abs().sum() > 0


def test_the_generator_keeps_channels_last_through_every_convolution():
    """A channels_last input stays channels_last in every layer, in bfloat16 as the Denoiser
    runs it on a CPU: one map made in the default layout and concatenated in (the ARN's
    first attention map once was) turned the whole net to the other layout, 23 % slower."""
    from stream_denoise.models.weights import load_generator

    generator, _ = load_generator("lite")
    generator = generator.to(torch.bfloat16).eval()
    layouts: dict[str, bool] = {}

    def seen(name: str):
        def hook(module, args, out) -> None:
            layouts.setdefault(name, args[0].is_contiguous(memory_format=torch.channels_last))
        return hook

    for name, module in generator.named_modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            module.register_forward_hook(seen(name))
    x = torch.rand(2, 3, 64, 96).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        generator(x, inference=True)
    assert len(layouts) > 20 and all(layouts.values()), [n for n, cl in layouts.items() if not cl]


def test_gated_generator_starts_near_identity_where_attention_is_off():
    """With a gated output, zero attention means output == input exactly."""
    cfg = GeneratorConfig(arn_width=8, steps=2, res_blocks=1, ae_width=8, dilations=(2,),
                          unshuffle=2, gate_output=True)
    generator = Generator(cfg).eval()
    torch.nn.init.zeros_(generator.arn.to_map.weight)
    torch.nn.init.constant_(generator.arn.to_map.bias, -1.0)  # clamps to a gate of 0
    x = torch.rand(1, 3, 32, 48)
    with torch.inference_mode():
        assert torch.equal(generator(x).image, x)


def test_gate_dead_zone_keeps_pixels_whose_attention_is_below_the_threshold():
    """gate_threshold 0.3: attention 0.25 leaves the input untouched, 0.35 does not, and
    without the dead zone 0.25 does not either."""
    x = torch.rand(1, 3, 32, 48)

    def output(threshold: float, attention: float) -> torch.Tensor:
        torch.manual_seed(0)
        cfg = GeneratorConfig(arn_width=8, steps=2, res_blocks=1, ae_width=8, dilations=(2,),
                              unshuffle=2, gate_output=True, gate_threshold=threshold)
        generator = Generator(cfg).eval()
        torch.nn.init.zeros_(generator.arn.to_map.weight)
        torch.nn.init.constant_(generator.arn.to_map.bias, attention)
        with torch.inference_mode():
            return generator(x).image

    assert torch.equal(output(0.3, 0.25), x)
    assert (output(0.3, 0.35) - x).abs().max() > 1e-3
    assert (output(0.0, 0.25) - x).abs().max() > 1e-3


@pytest.mark.parametrize("size", [(96, 96), (128, 224), (224, 224)])
def test_discriminator_any_crop_size(size):
    disc = Discriminator(width=0.5)
    logit, attention = disc(torch.rand(3, 3, *size))
    assert logit.shape == (3, 1)
    assert attention.shape == (3, 1, *size)


def test_generator_and_discriminator_train_a_step():
    torch.manual_seed(0)
    cfg = GeneratorConfig(arn_width=8, steps=2, res_blocks=1, ae_width=8, dilations=(2,))
    gen, disc = Generator(cfg), Discriminator(width=0.25)
    x, target = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    opt = torch.optim.Adam([*gen.parameters(), *disc.parameters()], lr=1e-3)
    out = gen(x)
    logit, _ = disc(out.image)
    mse = torch.nn.functional.mse_loss
    loss = (mse(out.image, target) + mse(out.side2, target[..., ::2, ::2])
            + mse(out.side4, target[..., ::4, ::4]) + sum(a.mean() for a in out.attention)
            + logit.mean())
    loss.backward()
    grads = [p.grad for p in [*gen.parameters(), *disc.parameters()]]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    before = [p.detach().clone() for p in gen.parameters()]
    opt.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, gen.parameters()))


def test_config_rejects_nonsense():
    with pytest.raises(ValueError, match="ae_width"):
        GeneratorConfig(ae_width=7)
    with pytest.raises(ValueError, match="steps"):
        GeneratorConfig(steps=0)
    with pytest.raises(ValueError, match="gate_threshold"):
        GeneratorConfig(gate_threshold=1.0)
    with pytest.raises(ValueError, match="affine_features"):
        GeneratorConfig(affine_features=3)
    with pytest.raises(ValueError, match="fine_width"):
        GeneratorConfig(fine_width=0)


def test_the_affine_heads_dark_level_sees_a_veil_and_not_a_bright_drop():
    """The global affine head is told each colour's dark level because snow's veil lifts
    it everywhere while a drop, bright as it is, lifts it only where it lies."""
    import cv2
    import torch.nn.functional as F

    from stream_denoise.models.heads import _levels
    from tests.conftest import package_data

    photo = cv2.resize(cv2.imread(str(package_data("skimage", "data", "astronaut.png"))), (256, 256))
    drop = photo.copy()
    cv2.circle(drop, (128, 128), 20, (250, 250, 250), -1)
    veiled = cv2.convertScaleAbs(photo, alpha=0.95, beta=0.05 * 225)

    def dark(image):
        x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
        x = torch.cat([F.pixel_unshuffle(x, 4), torch.zeros(1, 1, 64, 64)], 1)
        return _levels(x)[0, 3:]

    base = dark(photo)
    assert (dark(veiled) - base).min() > 0.02
    assert (dark(drop) - base).abs().max() < 0.005


def test_the_affine_heads_attention_spread_tells_scattered_flakes_from_a_drop():
    """Same share of the map on, as 1-cell flakes or one blob: erosion keeps only the blob."""
    from stream_denoise.models.heads import _attention_spread

    flakes = torch.zeros(1, 1, 64, 64)
    flakes[..., 2::8, 2::8] = 1.0  # 64 isolated cells
    drop = torch.zeros(1, 1, 64, 64)
    drop[..., 20:28, 20:28] = 1.0  # 64 cells in one square
    f, d = _attention_spread(flakes)[0], _attention_spread(drop)[0]
    assert f[0] == d[0] and f[1] == d[1] == 64 / 64**2
    assert f[2] == f[3] == 0.0
    assert d[2] == 36 / 64**2 and d[3] == 16 / 64**2


def test_a_second_form_affine_head_reads_the_map_and_starts_as_a_no_op():
    config = GeneratorConfig(arn_width=8, steps=2, res_blocks=1, ae_width=8, dilations=(2,), unshuffle=2,
                             gate_output=True, global_affine=True, affine_features=2)
    generator = Generator(config).eval()
    assert generator.autoencoder.affine[0].in_features == 2 * 4 * 8 + 10
    plain = Generator(replace(config, global_affine=False)).eval()
    plain.load_state_dict(generator.state_dict(), strict=False)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(generator(x).image, plain(x).image)


def test_the_pixel_fine_gate_sets_a_factor_per_pixel_and_starts_as_a_no_op():
    config = GeneratorConfig(arn_width=8, steps=2, res_blocks=1, ae_width=8, dilations=(2,), unshuffle=4,
                             gate_output=True, fine_gate=True, fine_pixel=True, fine_width=4, fine_depth=2)
    torch.manual_seed(0)
    generator = Generator(config).eval()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        out = generator(x)
        assert torch.equal(out.fine_gate, torch.ones(1, 1, 32, 32))
        plain = Generator(replace(config, fine_gate=False)).eval()
        plain.load_state_dict(generator.state_dict(), strict=False)
        assert torch.equal(out.image, plain(x).image)
        torch.nn.init.normal_(generator.autoencoder.fine[-1].weight, std=1.0)
        factor = generator(x).fine_gate
    cells = factor.unfold(2, 4, 4).unfold(3, 4, 4)  # (1, 1, 8, 8, 4, 4): one 4x4 block per cell
    assert cells.flatten(-2).std(-1).min() > 0  # every cell's pixels get their own factor


def test_the_veil_head_unveils_only_what_the_gate_passes_through_and_starts_as_a_no_op():
    """A veil of v turns x into x * (1 - v) + AIR_LIGHT * v on every pixel: the head's
    estimate undoes it where the output is the input, and leaves the repair alone."""
    from stream_denoise.degrade.snow import AIR_LIGHT
    from stream_denoise.models.heads import AIR_LIGHT as MODEL_AIR_LIGHT

    assert MODEL_AIR_LIGHT * 255 == pytest.approx(AIR_LIGHT)
    config = GeneratorConfig(arn_width=8, steps=2, res_blocks=1, ae_width=8, dilations=(2,), unshuffle=2,
                             gate_output=True, veil_head=True)
    torch.manual_seed(0)
    generator = Generator(config).eval()
    clean = torch.rand(2, 3, 32, 32)
    veiled = clean * 0.96 + MODEL_AIR_LIGHT * 0.04
    with torch.no_grad():
        plain = Generator(replace(config, veil_head=False)).eval()
        plain.load_state_dict(generator.state_dict(), strict=False)
        assert torch.equal(generator(veiled).image, plain(veiled).image)
        assert torch.equal(generator(veiled).veil, torch.zeros(2, 1))
        generator.veil.out.weight.zero_()
        generator.veil.out.bias.fill_(50.0)  # surely veiled...
        generator.veil.strength.fill_(0.04)  # ...by 4 %
        generator.arn.to_map.bias.fill_(-20.0)  # a closed gate: the output is the input...
        assert torch.allclose(generator(veiled).image, clean, atol=1e-6)  # ...unveiled
        plain.arn.to_map.bias.fill_(20.0)
        generator.arn.to_map.bias.fill_(20.0)  # an open gate: the repair, untouched
        assert torch.allclose(generator(veiled).image, plain(veiled).image, atol=1e-6)
        generator.veil.out.bias.fill_(0.0)  # veiled with probability 0.5: half the strength...
        assert torch.allclose(generator(veiled).veil, torch.full((2, 1), 0.02))
        unsure = Generator(replace(config, veil_threshold=0.6)).eval()  # ...none inside the dead zone
        unsure.load_state_dict(generator.state_dict())
        assert torch.equal(unsure(veiled).veil, torch.zeros(2, 1))
    with pytest.raises(ValueError, match="veil_head needs gate_output"):
        GeneratorConfig(veil_head=True)


def test_embed_refuses_a_net_that_does_not_fit():
    """Only the autoencoder and the attentive-recurrent net may grow; any other shape change
    is named, not half-copied."""
    small = GeneratorConfig(arn_width=8, steps=2, res_blocks=1, ae_width=8, dilations=(2,), unshuffle=2,
                            gate_output=True)
    with pytest.raises(ValueError, match="arn.head.weight"):
        embed(Generator(replace(small, arn_width=4)), Generator(small))
    with pytest.raises(ValueError, match="veil.*does not fit"):
        embed(Generator(replace(small, veil_head=True, veil_width=4)),
              Generator(replace(small, veil_head=True, veil_width=8)))
    with pytest.raises(ValueError, match="does not fit"):
        embed(Generator(small), Generator(replace(small, ae_width=12)))
    with pytest.raises(ValueError, match="not a layer"):
        embed(Generator(small), Generator(replace(small, input_skip=True)))
