"""Training: the paper's losses, a short run that learns, exact resume, synthetic pairs."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from stream_denoise.cli import main
from stream_denoise.degrade import Raindrops, WetGlass
from stream_denoise.errors import UsageError
from stream_denoise.io.sources import read_rgb
from stream_denoise.metrics import psnr
from stream_denoise.models.generator import Generator, GeneratorConfig
from stream_denoise.models.weights import save_generator
from stream_denoise.train.config import load_train_config
from stream_denoise.train.data import PairedFolder
from stream_denoise.train.evaluate import HELD_OUT_FAMILIES, synthetic_eval_set
from stream_denoise.train.losses import (
    affine_loss,
    attention_loss,
    block_mask,
    fine_gate_loss,
    inverse_mse_weights,
    multiscale_loss,
    veil_loss,
)
from stream_denoise.train.surgery import head_parameters
from stream_denoise.train.trainer import Trainer
from tests.conftest import package_data

# The training configs of the bundled lite model (v12) and of the candidates trained on from it.
TRAIN_CONFIGS = [Path(__file__).resolve().parents[1] / "configs" / "train" / name
                 for name in ("lite-v12.yaml", "lite-v13.yaml", "lite-v14.yaml")]
TINY = {"arn_width": 8, "steps": 2, "res_blocks": 1, "ae_width": 8, "dilations": [2],
        "unshuffle": 2, "gate_output": True}


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    for name in ("astronaut.png", "chelsea.png", "coffee.png"):
        shutil.copy(package_data("skimage", "data", name), folder / name)
    return folder


def tiny_config(photos, **overrides):
    base = {"model": TINY, "disc_width": 0.125, "batch_size": 4, "steps": 40, "log_every": 1,
            "val_every": 1000, "data.sources": [str(photos)], "data.crop": 48,
            "data.val_samples": 4, "data.val_crop": 64, "data.max_side": 128,
            "degrade.enabled": ["raindrops", "gaussian"], "degrade.choose": "each"}
    base.update(overrides)
    return load_train_config(overrides=base)


def test_attention_loss_weights_later_steps_more():
    mask = torch.ones(1, 1, 4, 4)
    maps = [torch.zeros_like(mask), torch.ones_like(mask)]  # step 1 wrong, step 2 right
    assert attention_loss(maps, mask, theta=0.8) == pytest.approx(0.8)
    assert attention_loss(maps[::-1], mask, theta=0.8) == pytest.approx(1.0)


def test_attention_loss_counts_a_missed_damaged_cell_positive_weight_times_a_false_alarm():
    mask = torch.zeros(1, 1, 2, 2)
    mask[..., 0, 0] = 1
    missed = [torch.zeros_like(mask)]  # shut on the one damaged cell
    alarm = [torch.ones_like(mask)]  # open everywhere: right on it, wrong on 3 clean cells
    assert attention_loss(missed, mask) == pytest.approx(0.25)
    assert attention_loss(missed, mask, positive_weight=4.0) == pytest.approx(1.0)
    assert attention_loss(alarm, mask, positive_weight=4.0) == pytest.approx(0.75)


def test_multiscale_loss_compares_each_scale_to_the_resized_clean_image():
    clean = torch.rand(1, 3, 16, 16)
    outs = [torch.nn.functional.interpolate(clean, size=s, mode="area") for s in (4, 8, 16)]
    assert multiscale_loss(outs, clean).item() == pytest.approx(0.0, abs=1e-7)
    outs[0] = outs[0] + 0.1
    assert multiscale_loss(outs, clean).item() == pytest.approx(0.6 * 0.01, rel=1e-4)


def test_affine_loss_scores_the_veil_inverse_on_undamaged_pixels_only():
    clean = torch.rand(2, 3, 8, 8)
    veil = 0.05
    noisy = (1 - veil) * clean + veil * 0.9
    mask = torch.zeros(2, 1, 8, 8)
    mask[..., :4, :] = 1
    noisy[..., :4, :] = 1.0  # damage the gate repairs: the loss must not see it
    s = veil / (1 - veil)
    inverse = torch.tensor([[s, s, s, -0.9 * s, -0.9 * s, -0.9 * s]] * 2)
    assert affine_loss(noisy, clean, mask, inverse).item() == pytest.approx(0.0, abs=1e-10)
    base = (noisy - clean)[..., 4:, :].pow(2).mean(dim=(1, 2, 3))  # each sample's own veil error
    assert affine_loss(noisy, clean, mask, torch.zeros(2, 6)).item() == pytest.approx(
        (base / (base + 1e-4)).mean().item(), rel=1e-5)
    # relative to each sample's own damage: a 1-level darkening costs a clean sample 0.15
    # (1 level against the 40 dB floor) and helps a veiled one
    darker = torch.tensor([[0.0, 0.0, 0.0, -1 / 255, -1 / 255, -1 / 255]])
    zero = torch.zeros(1, 6)
    assert affine_loss(clean[:1], clean[:1], mask[:1], zero).item() == 0.0
    assert affine_loss(clean[:1], clean[:1], mask[:1], darker).item() == pytest.approx(0.1538, abs=1e-3)
    assert affine_loss(noisy[:1], clean[:1], mask[:1], darker) < affine_loss(noisy[:1], clean[:1], mask[:1], zero)


@pytest.mark.parametrize("pixel", [False, True])
def test_the_heads_own_losses_do_not_train_the_trunk_and_the_output_does_not_train_the_affine_head(pixel):
    """The output's error would teach the affine head to darken rainy frames for the drops
    the gate has not fully repaired; and the heads' own losses stay out of the features
    the rest of the net learns."""
    torch.manual_seed(0)
    generator = Generator(GeneratorConfig(**TINY, global_affine=True, fine_gate=True, fine_pixel=pixel)).train()
    affine, fine, trunk = generator.autoencoder.affine, generator.autoencoder.fine, generator.autoencoder.enc1
    for head in (affine, fine):
        torch.nn.init.normal_(head[-1].weight, std=0.1)
    out = generator(torch.rand(2, 3, 32, 32))
    assert out.fine_gate.shape == (2, 1, 32, 32) and out.affine.shape == (2, 6)
    out.image.sum().backward()
    assert all(p.grad is None for p in affine.parameters())
    assert all(p.grad is not None for p in fine.parameters())  # the gate it scales is in the output
    generator.zero_grad(set_to_none=True)
    out = generator(torch.rand(2, 3, 32, 32))
    (out.affine.sum() + out.fine_gate.sum()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in affine.parameters())
    assert all(p.grad is None for p in trunk.parameters())


def test_fine_gate_loss_is_least_where_the_factor_keeps_the_repair_and_drops_the_blur():
    torch.manual_seed(0)
    clean = torch.rand(2, 3, 16, 16)
    noisy = clean.clone()
    noisy[..., 4:8, 4:8] = 1.0  # a drop
    proposal = torch.zeros_like(clean)
    proposal[..., 4:8, 4:12] = 0.1 * torch.randn(2, 3, 4, 8)  # a blurry repair over two cells...
    proposal[..., 4:8, 4:8] = (clean - noisy)[..., 4:8, 4:8]  # ...exact on the drop
    best = torch.zeros(2, 1, 16, 16)
    best[..., 4:8, 4:8] = 1.0
    assert fine_gate_loss(best, proposal, noisy, clean).item() == pytest.approx(0.0, abs=1e-12)
    # keeping the whole cell gate leaves the blur on the clean cell; closing it, the drop
    keep_all = fine_gate_loss(torch.ones_like(best), proposal, noisy, clean).item()
    assert keep_all == pytest.approx(proposal[..., 4:8, 8:12].pow(2).sum().item() / clean.numel())
    assert fine_gate_loss(torch.zeros_like(best), proposal, noisy, clean) > keep_all
    # samples weighted like the multi-scale loss
    weights = torch.tensor([2.0, 0.0])
    per_sample = (noisy + proposal - clean).pow(2).mean(dim=(1, 2, 3))
    assert fine_gate_loss(torch.ones_like(best), proposal, noisy, clean, weights).item() == pytest.approx(
        per_sample[0].item())


def test_the_fine_factor_is_scored_before_its_clamp_so_a_factor_above_one_still_learns():
    """v6's factor was scored after clamp(0, 1): pushed above 1 by the output's error, it
    had no gradient left and its loss stayed flat for 23,000 steps."""
    torch.manual_seed(0)
    generator = Generator(GeneratorConfig(**TINY, fine_gate=True)).train()
    with torch.no_grad():
        generator.arn.to_map.bias.fill_(1.0)  # an open gate
        generator.autoencoder.fine[-1].bias.fill_(0.5)  # factor 1.5, clamped to 1 in the gate
    noisy, clean = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    out = generator(noisy)
    assert out.fine_gate.min() > 1.0 and out.proposal.shape == (2, 3, 32, 32)
    fine_gate_loss(out.fine_gate, out.proposal, noisy, clean).backward()
    assert generator.autoencoder.fine[-1].bias.grad.abs().sum() > 0


def test_veil_loss_classifies_veiled_frames_and_scores_the_veil_in_percent_on_known_ones():
    logit = torch.tensor([[2.0], [-1.0], [5.0]], requires_grad=True)
    veil = torch.tensor([[0.01], [0.0], [0.5]], requires_grad=True)
    target = torch.tensor([0.03, 0.0, float("nan")])  # the third: a real pair, veil unknown
    loss = veil_loss(logit, veil, target)
    bce = -(torch.log(torch.sigmoid(torch.tensor(2.0))) + torch.log(torch.sigmoid(torch.tensor(1.0)))) / 2
    assert loss.item() == pytest.approx(bce.item() + (2.0 ** 2 + 0.0) / 2)
    loss.backward()
    assert logit.grad[2].item() == veil.grad[2].item() == 0.0
    assert logit.grad[0].item() < 0 < logit.grad[1].item()  # towards veiled, and not veiled
    assert veil.grad[0].item() < 0  # pushed up, towards 0.03
    unknown = veil_loss(logit, veil, torch.full((3,), float("nan")))
    assert unknown.item() == 0.0 and unknown.requires_grad


def test_synthetic_samples_carry_their_veil_and_real_pairs_none(photos, tmp_path):
    """The veil head's target: snow's share of air light, 0 for kinds that add none."""
    snowy = Trainer(tiny_config(photos, **{"degrade.enabled": ["snow"]}), tmp_path / "s")
    veils = [s.veil for s in snowy.batch(0) + snowy.batch(1)]
    assert all(0.0 <= v <= 0.05 for v in veils) and len(set(veils)) == len(veils)
    rainy = Trainer(tiny_config(photos), tmp_path / "r")
    assert all(s.veil == 0.0 for s in rainy.batch(0))
    for part in ("noisy", "clean"):
        (tmp_path / "pairs" / part).mkdir(parents=True)
        shutil.copy(photos / "coffee.png", tmp_path / "pairs" / part / "a.png")
    assert np.isnan(PairedFolder(tmp_path / "pairs", 48).sample((0, 0, 0)).veil)


def test_block_mask_marks_every_cell_holding_a_damaged_pixel():
    mask = torch.zeros(1, 1, 8, 8)
    mask[0, 0, 5, 2] = 1
    cells = block_mask(mask, 4)
    assert cells[0, 0, 4:, :4].eq(1).all() and cells.sum() == 16
    assert block_mask(mask, 1) is mask


@pytest.mark.parametrize("head", ["input_skip", "fine_gate", "global_affine", "veil_head"])
def test_init_grows_a_trained_model_without_changing_its_output(photos, tmp_path, head):
    """A checkpoint without a zero-initialised head continues training with it, as a no-op
    at first (how the bundled lite v1 became v2, and v4 became v6), and the head learns."""
    torch.manual_seed(0)
    old = Generator(GeneratorConfig(**TINY))
    with torch.no_grad():  # an open gate, as in a trained net, so gated heads get gradients
        old.arn.to_map.bias.fill_(1.0)
    save_generator(tmp_path / "v1.safetensors", old, half=False)
    snowy = {"degrade.enabled": ["snow", "raindrops"]}  # a veil for the veil head to learn
    trainer = Trainer(tiny_config(photos, model={**TINY, head: True}, **snowy), tmp_path / "v2")
    trainer.init_from(tmp_path / "v1.safetensors")
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        assert torch.equal(old.eval()(x).image, trainer.generator.eval()(x).image)
    ae = trainer.generator.autoencoder
    layer = {"input_skip": ae.skip, "fine_gate": ae.fine and ae.fine[-1],
             "global_affine": ae.affine and ae.affine[-1], "veil_head": trainer.generator.veil}[head]
    layer = layer.out if head == "veil_head" else layer
    before = layer.weight.detach().clone()
    trainer.train_step(trainer.batch(0))
    assert not torch.equal(before, layer.weight)
    other = tiny_config(photos, model={**TINY, "res_blocks": 2})
    with pytest.raises(UsageError, match="different architecture"):
        Trainer(other, tmp_path / "v3").init_from(tmp_path / "v1.safetensors")
    save_generator(tmp_path / "v2.safetensors", trainer.generator, half=False)
    with pytest.raises(UsageError, match="lacks"):
        Trainer(tiny_config(photos, model=TINY), tmp_path / "v3").init_from(tmp_path / "v2.safetensors")


@pytest.mark.parametrize("heads", [{}, {"fine_gate": True, "global_affine": True},
                                   {"fine_gate": True, "fine_pixel": True, "global_affine": True,
                                    "affine_features": 2}])
def test_init_widens_the_autoencoder_without_changing_its_output(photos, tmp_path, heads):
    """How lite v8 grew from v6: every weight of the narrow net is kept, the new channels'
    weights into the old ones are zero (output unchanged), and training moves them."""
    torch.manual_seed(0)
    old = Generator(GeneratorConfig(**TINY, **heads))
    with torch.no_grad():  # trained-looking heads, so that their inputs' layout matters
        old.arn.to_map.bias.fill_(1.0)
        for head in (old.autoencoder.fine, old.autoencoder.affine):
            if head is not None:
                torch.nn.init.normal_(head[-1].weight, std=0.1)
    save_generator(tmp_path / "narrow.safetensors", old, half=False)
    trainer = Trainer(tiny_config(photos, model={**TINY, **heads, "ae_width": 12}), tmp_path / "wide")
    trainer.init_from(tmp_path / "narrow.safetensors")
    wide = trainer.generator
    assert wide.autoencoder.enc1.out_channels == 12
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        a, b = old.eval()(x), wide.eval()(x)
    for name in ("image", "side2", "side4") + (("affine",) if heads else ()):
        assert torch.allclose(getattr(a, name), getattr(b, name), atol=1e-6), name
    into_old = wide.autoencoder.enc2.weight[:16, 8:]  # new enc1 channels -> old enc2 channels
    assert into_old.abs().sum() == 0
    wide.train()
    trainer.train_step(trainer.batch(0))
    assert into_old.abs().sum() > 0
    narrower = tiny_config(photos, model={**TINY, **heads, "ae_width": 4})
    with pytest.raises(UsageError, match="different architecture"):
        Trainer(narrower, tmp_path / "narrower").init_from(tmp_path / "narrow.safetensors")


def test_init_widens_the_attentive_recurrent_net_without_changing_its_output(photos, tmp_path):
    """How lite v13 grew from v12: the detector gains channels, its maps and the repaired
    image stay exactly the old net's, and the new channels' weights into the old ones
    (the LSTM's gates read features and hidden state, both grown) move on the first step.
    Equal up to float rounding: a wider conv sums in another order."""
    torch.manual_seed(0)
    heads = {"fine_gate": True, "veil_head": True}
    old = Generator(GeneratorConfig(**TINY, **heads))
    with torch.no_grad():
        old.arn.to_map.bias.fill_(0.5)
    save_generator(tmp_path / "narrow.safetensors", old, half=False)
    trainer = Trainer(tiny_config(photos, model={**TINY, **heads, "arn_width": 12}), tmp_path / "wide")
    trainer.init_from(tmp_path / "narrow.safetensors")
    wide = trainer.generator
    assert wide.arn.head.out_channels == 12 and wide.arn.lstm.gate_i.in_channels == 24
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        a, b = old.eval()(x), wide.eval()(x)
    assert all(torch.allclose(p, q, atol=1e-6) for p, q in zip(a.attention, b.attention, strict=True))
    assert torch.allclose(a.image, b.image, atol=1e-6)
    gate = wide.arn.lstm.gate_f.weight
    into_old = [gate[:8, 8:12], gate[:8, 20:24]]  # new feature and new hidden channels -> old gates
    assert all(t.abs().sum() == 0 for t in into_old)
    assert torch.equal(gate[:8, 12:20], old.arn.lstm.gate_f.weight[:, 8:16])  # old hidden, moved up
    wide.train()
    trainer.train_step(trainer.batch(0))
    assert all(t.abs().sum() > 0 for t in into_old)
    narrower = tiny_config(photos, model={**TINY, **heads, "arn_width": 4})
    with pytest.raises(UsageError, match="wider ae_width or arn_width"):
        Trainer(narrower, tmp_path / "narrower").init_from(tmp_path / "narrow.safetensors")


def test_reshaped_heads_start_afresh_on_the_trained_trunk(photos, tmp_path):
    torch.manual_seed(0)
    old = Generator(GeneratorConfig(**TINY, fine_gate=True, global_affine=True))
    with torch.no_grad():
        old.arn.to_map.bias.fill_(1.0)
        for head in (old.autoencoder.fine, old.autoencoder.affine):
            torch.nn.init.normal_(head[-1].weight, std=0.1)
    save_generator(tmp_path / "v6.safetensors", old, half=False)
    model = {**TINY, "fine_gate": True, "fine_width": 12, "fine_depth": 2, "global_affine": True,
             "affine_features": 2}
    trainer = Trainer(tiny_config(photos, model=model), tmp_path / "v7")
    trainer.init_from(tmp_path / "v6.safetensors")
    with torch.no_grad():
        for head in (old.autoencoder.fine, old.autoencoder.affine):  # the old net without them
            head[-1].weight.zero_()
            head[-1].bias.zero_()
        x = torch.rand(1, 3, 64, 96)
        assert torch.equal(old.eval()(x).image, trainer.generator.eval()(x).image)
        assert torch.equal(old.arn.to_map.weight, trainer.generator.arn.to_map.weight)


def test_heads_only_trains_the_heads_at_their_own_rate_and_leaves_the_rest(photos, tmp_path):
    torch.manual_seed(0)
    model = {**TINY, "fine_gate": True, "global_affine": True}
    trainer = Trainer(tiny_config(photos, model=model, **{
        "loss.adversarial": 0.0, "optim.head_lr": 1e-2, "optim.heads_only": True}), tmp_path / "a")
    with torch.no_grad():
        trainer.generator.arn.to_map.bias.fill_(1.0)
    trunk = {k: v.clone() for k, v in trainer.generator.state_dict().items()
             if not k.startswith(("autoencoder.fine.", "autoencoder.affine."))}
    heads = [p.detach().clone() for p in head_parameters(trainer.generator)]
    for step in range(3):
        trainer.train_step(trainer.batch(step))
    after = trainer.generator.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in trunk.items())
    assert all(not torch.equal(a, b) for a, b in zip(heads, head_parameters(trainer.generator)))
    assert [g["lr"] for g in trainer.opt_g.param_groups] == [pytest.approx(1e-2 * trainer.lr_factor(2))]
    both = Trainer(tiny_config(photos, model=model, **{"optim.head_lr": 1e-2}), tmp_path / "b")
    assert [g["base_lr"] for g in both.opt_g.param_groups] == [1e-2, both.config.optim.lr]
    with pytest.raises(UsageError, match="heads_only needs"):
        Trainer(tiny_config(photos, **{"optim.heads_only": True}), tmp_path / "c")


@pytest.mark.parametrize("weighting", ["none", "input_relative", "output_relative"])
def test_a_short_run_reduces_the_loss(photos, tmp_path, weighting):
    torch.manual_seed(0)
    trainer = Trainer(tiny_config(photos, **{"loss.adversarial": 0.0, "optim.lr": 2e-3,
                                             "loss.sample_weighting": weighting}), tmp_path)
    fixed = trainer.batch(0)
    first = trainer.train_step(fixed)["g_loss"]
    for _ in range(40):
        last = trainer.train_step(fixed)["g_loss"]
    assert last < 0.5 * first


def test_resume_continues_exactly(photos, tmp_path):
    cfg = tiny_config(photos, steps=4)
    straight = Trainer(cfg, tmp_path / "a")
    for step in range(3):
        straight.train_step(straight.batch(step))
        if step == 1:
            ckpt = straight.save("last.pt")
    resumed = Trainer(cfg, tmp_path / "b")
    resumed.resume(ckpt)
    assert resumed.step == 2
    resumed.train_step(resumed.batch(resumed.step))
    for a, b in zip(straight.generator.parameters(), resumed.generator.parameters()):
        assert torch.equal(a, b)
    for a, b in zip(straight.discriminator.parameters(), resumed.discriminator.parameters()):
        assert torch.equal(a, b)


def test_train_command_writes_checkpoints_logs_and_curves(photos, tmp_path, capsys):
    cfg = tmp_path / "t.yaml"
    cfg.write_text(json.dumps({
        "model": TINY, "disc_width": 0.125, "batch_size": 2, "steps": 6, "log_every": 2,
        "val_every": 3, "data": {"crop": 48, "val_samples": 2, "val_crop": 64, "max_side": 128},
        "degrade": {"enabled": ["raindrops"]}}))
    out = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--data", str(photos), "--out", str(out), "-q"]) == 0
    assert {"last.pt", "best.pt", "log.jsonl", "curves.png"} <= {p.name for p in out.iterdir()}
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "val_psnr" in r] == [3, 6]
    assert all(np.isfinite(r["g_loss"]) and "d_loss" in r for r in rows)
    # The checkpoint runs through the pipeline as a model.
    assert main(["run", "sample", "-o", str(tmp_path / "o.mp4"), "--model", str(out / "best.pt"), "-q"]) == 0
    # And a resumed run picks up at its step.
    assert main(["train", "--config", str(cfg), "--data", str(photos), "--out", str(out),
                 "--resume", str(out / "last.pt"), "--steps", "8", "-q"]) == 0
    assert "step 8/8" in capsys.readouterr().err
    # A new run can start from the trained generator.
    assert main(["train", "--config", str(cfg), "--data", str(photos), "--out", str(tmp_path / "r2"),
                 "--init", str(out / "best.pt"), "--steps", "1", "-q"]) == 0


def test_synth_pairs_feed_the_paired_dataset(photos, tmp_path):
    out = tmp_path / "pairs"
    assert main(["synth", str(photos), "-o", str(out), "--kinds", "raindrops,snow", "--max-side", "128"]) == 0
    assert sorted(p.name for p in (out / "noisy").iterdir()) == sorted(p.name for p in (out / "clean").iterdir())
    sample = PairedFolder(out, crop=64).sample((0, 0))
    assert sample.noisy.shape == sample.clean.shape == (64, 64, 3)
    assert sample.mask.mean() > 0 and not np.array_equal(sample.noisy, sample.clean)


def test_synth_rejects_unknown_kinds(photos, tmp_path, capsys):
    assert main(["synth", str(photos), "-o", str(tmp_path / "p"), "--kinds", "hail"]) == 2
    assert "--kinds hail" in capsys.readouterr().err


FIT, HELD_OUT, PAIRS = ("the training mix's kinds (fit)", "families training never draws (generalisation)",
                       "real pairs")


def eval_tables(text: str) -> dict[str, list[str]]:
    """``eval``'s output as {title: table lines (header, rule, rows)}."""
    tables: dict[str, list[str]] = {}
    for block in text.strip().split("\n\n"):
        lines = block.strip().splitlines()
        if lines[0].endswith(":"):
            title = lines[0][:-1]
            tables[title] = []
        else:
            tables[title] += lines
    return tables


def eval_psnr(row: str, column: int) -> float:
    """PSNR of one cell of an eval row (columns: 3 input, 4 gaussian, 5 generator, 6 chain)."""
    return float(row.split("|")[column].split(" / ")[0])


@pytest.mark.parametrize("config", TRAIN_CONFIGS, ids=lambda p: p.stem)
def test_held_out_families_are_never_drawn_by_the_training_configs(config):
    """The generalisation table means something only if training never saw those looks:
    each held-out family differs from the models' training mixes in a parameter range
    training never takes."""
    trained = load_train_config(config).degrade
    drops, snow, dust = (HELD_OUT_FAMILIES[k] for k in ("raindrops", "snow", "dust"))
    assert "raindrops" in trained.enabled and drops.haze < trained.raindrops.haze
    assert drops.sky < trained.raindrops.sky
    assert "snow" in trained.enabled and snow.wind[0] > max(abs(w) for w in trained.snow.wind)
    assert "dust" in trained.enabled and dust.smudge_size[0] > trained.dust.smudge_size[1]
    assert dust.specks == dust.hairs == (0, 0)


def test_eval_scores_held_out_families_and_whole_real_pairs(photos, tmp_path, capsys):
    """``eval`` adds the held-out families' table, and ``--pairs`` a table of whole real
    photos (of any size) scored as a camera sees them."""
    pairs = tmp_path / "pairs"
    (pairs / "noisy").mkdir(parents=True)
    (pairs / "clean").mkdir()
    expected = []
    for i, name in enumerate(("astronaut.png", "coffee.png")):  # 512x512 and 600x400
        clean = read_rgb(photos / name)
        noisy = Raindrops().apply(clean, seed=i)
        cv2.imwrite(str(pairs / "noisy" / name), cv2.cvtColor(noisy, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(pairs / "clean" / name), cv2.cvtColor(clean, cv2.COLOR_RGB2BGR))
        expected.append(psnr(noisy, clean))
    assert main(["eval", "--data", str(photos), "--kinds", "dust,gaussian", "--samples", "3", "--crop", "64",
                 "--pairs", str(pairs)]) == 0
    tables = eval_tables(capsys.readouterr().out)
    assert [r.split("|")[1].strip() for r in tables[FIT][2:]] == ["dust", "gaussian"]
    (held,) = tables[HELD_OUT][2:]
    assert held.split("|")[1].strip() == "dust (held out)" and np.isfinite(eval_psnr(held, 3))
    (row,) = tables[PAIRS][2:]
    assert row.split("|")[1:3] == [" pairs: pairs ", " 2 "]
    assert eval_psnr(row, 3) == pytest.approx(np.mean(expected), abs=0.01)
    assert main(["eval", "--data", str(photos), "--kinds", "gaussian", "--samples", "2", "--crop", "64",
                 "--no-held-out", "--pairs", str(photos)]) == 2
    assert "not a paired folder" in capsys.readouterr().err


def test_eval_sets_never_hold_an_untouched_crop(photos):
    """Sparse weather misses some crops; an unchanged crop would score an infinite PSNR."""
    images = [read_rgb(photos / "coffee.png")]
    sparse = WetGlass(coverage=(0.002, 0.002), radius=(0.01, 0.01), trails=0.0)
    (samples,) = synthetic_eval_set(images, {"sparse": sparse}, samples=6, crop=48).values()
    assert all(not np.array_equal(s.noisy, s.clean) for s in samples)


def test_eval_table_has_a_row_per_kind_and_every_stage(photos, tmp_path, capsys):
    from stream_denoise.models.generator import Generator, GeneratorConfig
    from stream_denoise.models.weights import save_generator

    torch.manual_seed(0)
    ckpt = save_generator(tmp_path / "g.safetensors", Generator(GeneratorConfig(**TINY)))
    assert main(["eval", "--model", str(ckpt), "--data", str(photos), "--kinds", "raindrops,gaussian",
                 "--samples", "3", "--crop", "64", "--pre-sigma", "0.5"]) == 0
    table = eval_tables(capsys.readouterr().out)[FIT]
    assert "gaussian σ=1" in table[0] and "chain (impulse, pre σ=0.5, post σ=0)" in table[0]
    rows = {line.split("|")[1].strip(): line for line in table[2:]}
    assert set(rows) == {"raindrops", "gaussian"}
    # Gaussian noise is what a Gaussian filter is for: it must beat the input there.
    cells = [c.strip() for c in rows["gaussian"].split("|")[3:5]]
    (inp, _), (gauss, _) = (map(float, c.split(" / ")) for c in cells)
    assert gauss > inp + 1


def test_eval_auto_sigma_sets_how_hard_auto_blurs_noisy_frames(photos, tmp_path, capsys):
    from stream_denoise.models.generator import Generator, GeneratorConfig
    from stream_denoise.models.weights import save_generator

    torch.manual_seed(0)
    ckpt = save_generator(tmp_path / "g.safetensors", Generator(GeneratorConfig(**TINY)))
    args = ["eval", "--model", str(ckpt), "--data", str(photos), "--kinds", "gaussian",
            "--samples", "3", "--crop", "64", "--no-impulse"]

    def chain_and_generator(*extra: str) -> tuple[str, str]:
        assert main([*args, *extra]) == 0
        cells = [c.strip() for c in eval_tables(capsys.readouterr().out)[FIT][2].split("|")]
        return cells[6], cells[5]

    chain, generator = chain_and_generator("--auto-sigma", "1.5", "--auto-noise", "3,4")
    assert chain != generator  # this noise reads above 3 to 4: auto blurs it
    chain, generator = chain_and_generator("--auto-sigma", "0", "--auto-noise", "3,4")
    assert chain == generator  # auto with sigma 0 never blurs: the chain is the generator
    chain, generator = chain_and_generator("--auto-sigma", "1.5", "--auto-noise", "60,80")
    assert chain == generator  # nothing reads as noisy as 60
    assert main([*args, "--auto-sigma", "-1"]) == 2
    assert "--auto-sigma" in capsys.readouterr().err
    assert main([*args, "--auto-noise", "3"]) == 2
    assert "auto_noise" in capsys.readouterr().err


def test_eval_chain_removes_impulses_unless_told_not_to(photos, tmp_path, capsys):
    from stream_denoise.models.generator import Generator, GeneratorConfig
    from stream_denoise.models.weights import save_generator

    torch.manual_seed(0)
    ckpt = save_generator(tmp_path / "g.safetensors", Generator(GeneratorConfig(**TINY)))
    args = ["eval", "--model", str(ckpt), "--data", str(photos), "--kinds", "salt_pepper",
            "--samples", "3", "--crop", "64", "--pre-sigma", "0"]

    def header_and_chain_psnr(*extra: str) -> tuple[str, float]:
        assert main([*args, *extra]) == 0
        lines = eval_tables(capsys.readouterr().out)[FIT]
        return lines[0], float(lines[2].split("|")[6].split(" / ")[0])

    head, with_median = header_and_chain_psnr()
    assert "chain (impulse, pre σ=0, post σ=0)" in head
    head, without = header_and_chain_psnr("--no-impulse")
    assert "chain (pre σ=0, post σ=0)" in head
    # Random weights: the generator passes much of its input through, so what the median
    # removed first shows up as several dB.
    assert with_median > without + 3, (with_median, without)


def test_inverse_mse_weights_favour_faintly_damaged_samples() -> None:
    clean = torch.zeros(3, 3, 8, 8)
    noisy = clean.clone()
    noisy[0] += 0.01   # faint (dust-like)
    noisy[1] += 0.1    # heavy (rain-like)
    w = inverse_mse_weights(noisy, clean)  # sample 2 is clean: the floor caps its weight
    assert w.mean().item() == pytest.approx(1.0)
    assert w[2] > w[0] > w[1]
    assert (w[0] / w[1]).item() == pytest.approx((0.01 + 1e-4) / (1e-4 + 1e-4), rel=1e-3)
    outs = [clean + 0.1] * 3
    plain = multiscale_loss(outs, clean)
    weighted = multiscale_loss(outs, clean, sample_weights=w)
    assert weighted.item() == pytest.approx(plain.item(), rel=1e-4)  # equal errors: mean weight 1


def test_output_relative_weights_give_the_gradient_of_mean_log_mse() -> None:
    """Weighting by the output's own error is what mean PSNR (the evaluation metric) asks."""
    gen = torch.Generator().manual_seed(0)
    clean = torch.rand(4, 3, 16, 16, generator=gen)
    scale = torch.tensor([0.003, 0.03, 0.1, 0.3])[:, None, None, None]  # dust-like ... rain-like
    out = (clean + scale * torch.randn(4, 3, 16, 16, generator=gen)).requires_grad_()
    weighted = multiscale_loss([out], clean, (1.0,), inverse_mse_weights(out, clean, floor=0.0))
    (g_weighted,) = torch.autograd.grad(weighted, out)
    log_mse = (out - clean).pow(2).mean(dim=(1, 2, 3)).log().mean()
    (g_log,) = torch.autograd.grad(log_mse, out)
    cos = torch.nn.functional.cosine_similarity(g_weighted.flatten(), g_log.flatten(), dim=0)
    assert cos.item() == pytest.approx(1.0, abs=1e-5)


def test_worker_processes_make_the_same_batches_as_the_helper_thread(photos, tmp_path):
    from stream_denoise.train.batches import BatchMaker

    trainer = Trainer(tiny_config(photos), tmp_path)
    with BatchMaker(trainer.train_set, trainer.seeds, workers=0) as thread, \
            BatchMaker(trainer.train_set, trainer.seeds, workers=2) as procs:
        for step in (0, 1, 2, 5):  # a jump skips ahead, as a resume does
            a, b = thread.get(step, 8), procs.get(step, 8)
            assert len(a) == len(b) == 4
            for x, y in zip(a, b):
                assert np.array_equal(x.noisy, y.noisy) and np.array_equal(x.clean, y.clean)
                assert np.array_equal(x.mask, y.mask)
    assert not np.array_equal(a[0].noisy, trainer.batch(0)[0].noisy)  # steps differ


class FakeClock:
    """The trainer's clock (its module's ``time``), moved by the test alone: what a time
    budget decides then follows from the step times the test sets, not from how loaded
    the machine is. Step times are multiples of 1/32 s, exact in binary."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now


def _budget_log(path: Path) -> list[int]:
    rows = [json.loads(line) for line in (path / "log.jsonl").read_text().splitlines()]
    return [r["budget_total_steps"] for r in rows if "budget_total_steps" in r]


def test_a_time_budget_follows_a_speed_that_changes(photos, tmp_path, monkeypatch):
    """Data workers that take a while to start make the first steps slow (on a lent H100,
    2 steps/s for the first minute, then 21): the step count is fitted again from the speed
    since the last fit, so the run is not cut to the warm-up's pace. Here 4 steps/s for the
    first 2 s, then 32, in a 6 s budget."""
    from stream_denoise.train import budget as budget_module
    from stream_denoise.train import trainer as trainer_module

    clock = FakeClock()
    monkeypatch.setattr(trainer_module, "time", clock)
    monkeypatch.setattr(budget_module, "PROBE_STEPS", 5)
    trainer = Trainer(tiny_config(photos, steps=100_000, log_every=5), tmp_path)

    def step(samples):
        clock.now += 0.25 if clock.now < 2 else 1 / 32
        trainer.step += 1
        return {"g_loss": 0.0}

    monkeypatch.setattr(trainer, "train_step", step)
    result = trainer.fit(budget_minutes=0.1)
    # Fits (95 % of the budget left at the speed since the last fit): at step 6 (1.5 s,
    # 4 steps/s) 6 + int(4 * 4.5 * 0.95) = 23; past 1/4 of the budget at step 11
    # (2.09 s, 8.4 steps/s since the last fit) 42; past 1/2 at step 41 (3.03 s, 32 steps/s)
    # 41 + int(32 * 2.97 * 0.95) = 131; past 3/4 at step 89 (4.53 s) 133.
    assert _budget_log(tmp_path) == [23, 42, 131, 133]
    assert result["total_steps"] == result["step"] == 133
    assert clock.now <= 6.0  # the last step ended inside the budget (5.91 s)


def test_a_time_budget_ends_the_learning_rate_schedule_on_time(photos, tmp_path, monkeypatch):
    """Real training steps that take 1/8 s each on the trainer's clock: the step count is
    fitted to the 6 s budget, the run ends at its fitted end inside the budget, and the
    cosine schedule with it."""
    from stream_denoise.train import budget as budget_module
    from stream_denoise.train import trainer as trainer_module

    clock = FakeClock()
    monkeypatch.setattr(trainer_module, "time", clock)
    monkeypatch.setattr(budget_module, "PROBE_STEPS", 5)
    cfg = tiny_config(photos, steps=100_000, log_every=5, **{"loss.adversarial": 0.0})
    trainer = Trainer(cfg, tmp_path)
    train_step = trainer.train_step

    def step(samples):
        clock.now += 1 / 8
        return train_step(samples)

    monkeypatch.setattr(trainer, "train_step", step)
    result = trainer.fit(budget_minutes=0.1)
    # 8 steps/s throughout: at step 6 (0.75 s) 6 + int(8 * 5.25 * 0.95) = 45, then 46 at
    # step 13, 46 at step 25 and 47 at step 37 (the integer parts of what is left).
    assert _budget_log(tmp_path) == [45, 46, 46, 47]
    assert result["total_steps"] == result["step"] == 47
    assert clock.now == 47 / 8 <= 6.0  # ends on its fitted end, within the budget
    rows = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    last_lr = [r["lr"] for r in rows if "lr" in r][-1]
    assert last_lr < cfg.optim.lr * (cfg.optim.min_lr_ratio + 0.05)  # cosine at >= 90 %: near its floor
    # A resumed budgeted run keeps its own end (and so its learning-rate curve).
    again = Trainer(cfg, tmp_path / "b")
    again.resume(tmp_path / "last.pt")
    assert again.total_steps == result["total_steps"]
