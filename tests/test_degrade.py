"""Tests for stream_denoise.degrade on real photos from scikit-image's data folder."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest
from pydantic import BaseModel, ValidationError

from stream_denoise.degrade import (
    H264,
    KINDS,
    Defects,
    DegradeConfig,
    Dust,
    GaussianNoise,
    Jpeg,
    KindName,
    Mixture,
    Raindrops,
    SaltPepper,
    Snow,
    Stripes,
    WetGlass,
    contact_sheet,
    degrade,
    difference_mask,
    write_pairs,
)
from stream_denoise.metrics import psnr

PHOTOS = ("astronaut", "chelsea", "coffee")


def _read(name: str) -> np.ndarray:
    spec = importlib.util.find_spec("skimage")
    assert spec is not None and spec.origin is not None
    path = Path(spec.origin).parent / "data" / f"{name}.png"
    bgr = cv2.imread(str(path))
    assert bgr is not None, path
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    return {name: _read(name) for name in PHOTOS}


@pytest.fixture(scope="module")
def coffee(photos: dict[str, np.ndarray]) -> np.ndarray:
    return photos["coffee"]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a * b).sum() / max(np.maximum(a, b).sum(), 1.0))


# --- every kind -------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(KINDS))
def test_kind_contract(name: str, photos: dict[str, np.ndarray]) -> None:
    kind = KINDS[name]()
    for image in photos.values():
        before = image.copy()
        out = kind.apply(image, seed=3, t=5)
        assert np.array_equal(image, before), "input modified in place"
        assert out.shape == image.shape and out.dtype == np.uint8
        assert not np.array_equal(out, image), "image unchanged"
        assert np.array_equal(out, kind.apply(image, seed=3, t=5)), "not deterministic"
        assert not np.array_equal(out, kind.apply(image, seed=4, t=5)), "seed has no effect"
    flipped = photos["coffee"][10:200:, ::-1]  # a strided view, as crops and flips are
    assert kind.apply(flipped, seed=3).shape == flipped.shape


def test_registry_names_and_config_fields() -> None:
    assert set(KINDS) == {
        "raindrops", "wet_glass", "dust", "snow", "gaussian", "salt_pepper", "stripes", "jpeg", "h264",
        "defects",
    }  # fmt: skip
    config = DegradeConfig()
    for name, cls in KINDS.items():
        assert cls.name == name
        assert type(config.params(name)) is cls


def test_rejects_bad_images(coffee: np.ndarray) -> None:
    with pytest.raises(ValueError, match="uint8"):
        Raindrops().apply(coffee.astype(np.float32), 0)
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        GaussianNoise().apply(coffee[..., 0], 0)
    with pytest.raises(ValueError, match="seed"):
        Dust().apply(coffee, -1)


# --- time ------------------------------------------------------------------------------


def test_raindrops_persist_and_drift(coffee: np.ndarray) -> None:
    drops = Raindrops()
    frames = [drops.apply(coffee, seed=11, t=t) for t in range(51)]
    masks = [difference_mask(f, coffee) for f in frames]
    for t in range(50):
        assert iou(masks[t], masks[t + 1]) > 0.7, t
    assert not np.array_equal(frames[0], frames[1]), "drops do not move"
    assert iou(masks[0], masks[50]) < iou(masks[0], masks[1]), "drops do not drift over 2 s"


def test_raindrops_drift_slowly_and_some_slide() -> None:
    drops = Raindrops(count=(200, 200))
    layout = drops._layout(0, 360, 640)
    speed = np.hypot(layout.vx, layout.vy)  # px/s at 640x360, 25 fps
    creeping = layout.wobble == 0
    assert np.all(speed[creeping] <= 0.012 * 360 + 1e-6)  # a few px/s
    assert (~creeping).any() and np.median(speed[~creeping]) > 3 * np.median(speed[creeping])


@pytest.mark.parametrize("kind", [Dust(), Defects()], ids=["dust", "defects"])
def test_static_kinds_do_not_change_over_time(kind: Dust | Defects, coffee: np.ndarray) -> None:
    first = kind.apply(coffee, seed=2, t=0)
    for t in (1, 17, 500):
        assert np.array_equal(first, kind.apply(coffee, seed=2, t=t))


@pytest.mark.parametrize("kind", [Snow(), GaussianNoise(), SaltPepper(), Stripes()], ids=lambda k: k.name)
def test_per_frame_kinds_change_over_time(kind: Snow, coffee: np.ndarray) -> None:
    assert not np.array_equal(kind.apply(coffee, seed=2, t=0), kind.apply(coffee, seed=2, t=1))


def test_veil_share_is_the_veil_snow_applies() -> None:
    """What a veil head is trained against must be what the frame got: a flake-free snow
    turns a flat grey into grey * (1 - v) + AIR_LIGHT * v, with v = veil_share(seed)."""
    grey = np.full((32, 48, 3), 90, np.uint8)
    for seed in range(5):
        kind = Snow(density=(0.0, 0.0), veil=(0.0, 0.3))
        v = kind.veil_share(seed)
        assert 0.0 < v < 0.3
        assert np.abs(kind.apply(grey, seed).astype(float) - (90 * (1 - v) + 225.0 * v)).max() <= 0.5
        # drawing flakes does not change the veil drawn for the seed
        assert Snow(veil=(0.0, 0.3)).veil_share(seed) == v
    two = Mixture((Snow(veil=(0.1, 0.1)), Raindrops(), Snow(veil=(0.2, 0.2))))
    assert two.veil_share(3) == pytest.approx(1 - 0.9 * 0.8)
    assert Mixture((Raindrops(), Dust())).veil_share(3) == 0.0


def test_snow_flakes_fall_coherently() -> None:
    """Frame t+1 is frame t moved down by the fall speed, not a new random field."""
    grey = np.full((240, 320, 3), 60, np.uint8)
    fps, step = 25.0, 4.0  # px per frame
    snow = Snow(fall_speed=(step * fps / 240, step * fps / 240), wind=(0.0, 0.0), sway=0.0, veil=(0.0, 0.0))
    a = snow.apply(grey, 1, 10)[..., 1].astype(np.float32)
    b = snow.apply(grey, 1, 11)[..., 1].astype(np.float32)
    (dx, dy), response = cv2.phaseCorrelate(a, b)
    assert 3.0 <= dy <= 5.0 and abs(dx) < 1.0, (dx, dy, response)


# --- mask ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(KINDS))
def test_mask_marks_the_change(name: str, photos: dict[str, np.ndarray]) -> None:
    kind = KINDS[name]()
    for image in photos.values():
        out = kind.apply(image, seed=1)
        mask = difference_mask(out, image)
        assert mask.dtype == np.float32 and mask.shape == image.shape[:2]
        assert set(np.unique(mask)) <= {0.0, 1.0}
        assert mask.sum() > 0, "empty attention mask at default strength"
        diff = np.abs(out.astype(int) - image.astype(int)).sum(axis=2)
        assert diff[mask == 0].max(initial=0) <= 30


def test_raindrop_mask_coverage(photos: dict[str, np.ndarray]) -> None:
    for image in photos.values():
        for seed in range(4):
            cover = difference_mask(Raindrops().apply(image, seed), image).mean()
            assert 0.02 <= cover <= 0.30, cover


def test_mask_threshold() -> None:
    clean = np.full((16, 16, 3), 100, np.uint8)
    noisy = clean.copy()
    noisy[0, 0] = (111, 110, 110)  # sum 31 > 30
    noisy[0, 1] = (110, 110, 110)  # sum 30, not above
    mask = difference_mask(noisy, clean)
    assert mask[0, 0] == 1 and mask[0, 1] == 0 and mask.sum() == 1


# --- strength --------------------------------------------------------------------------

# PSNR (dB) at default parameters, seeds 0-5 on the three photos, measured with margin.
PSNR_BANDS = {
    "raindrops": (15.0, 30.0),
    "wet_glass": (14.0, 32.0),
    "dust": (30.0, 42.0),
    "snow": (18.0, 32.0),
    "gaussian": (19.0, 35.0),
    "salt_pepper": (22.0, 34.0),
    "stripes": (25.0, 34.0),
    "jpeg": (25.0, 36.0),
    "h264": (22.0, 34.0),
    "defects": (24.0, 40.0),
}


@pytest.mark.parametrize("name", list(KINDS))
def test_psnr_band_at_defaults(name: str, photos: dict[str, np.ndarray]) -> None:
    lo, hi = PSNR_BANDS[name]
    kind = KINDS[name]()
    for image in photos.values():
        for seed in (0, 5):
            assert lo <= psnr(kind.apply(image, seed), image) <= hi


def test_gaussian_sigma_25_is_about_20_db(photos: dict[str, np.ndarray]) -> None:
    kind = GaussianNoise(sigma=(25.0, 25.0))
    for image in photos.values():
        assert 19.5 <= psnr(kind.apply(image, 0), image) <= 21.5


def test_stronger_settings_lower_psnr(coffee: np.ndarray) -> None:
    pairs = [
        (Jpeg(quality=(80, 80)), Jpeg(quality=(10, 10))),
        (H264(crf=(20, 20)), H264(crf=(45, 45))),
        (SaltPepper(amount=(0.001, 0.001)), SaltPepper(amount=(0.05, 0.05))),
        (Raindrops(count=(20, 20)), Raindrops(count=(200, 200))),
    ]
    for mild, strong in pairs:
        assert psnr(mild.apply(coffee, 0), coffee) > psnr(strong.apply(coffee, 0), coffee)


def test_sharp_and_defocused_drops(coffee: np.ndarray) -> None:
    """focus_blur 0 gives crisp bead edges; a large blur spreads them."""
    sharp = Raindrops(focus_blur=(0.0, 0.0)).apply(coffee, 1)
    soft = Raindrops(focus_blur=(0.02, 0.02)).apply(coffee, 1)

    def edge_energy(img: np.ndarray) -> float:
        delta = img.astype(np.float32) - coffee.astype(np.float32)
        return float(np.abs(cv2.Laplacian(delta, cv2.CV_32F)).mean())

    assert edge_energy(sharp) > 2 * edge_energy(soft)


def _round_drops(**kw: object) -> WetGlass:
    """Round, sharp, unwashed drops of one size: the geometry alone decides what they show."""
    base = dict(radius=(0.08, 0.08), size_spread=0.0, coverage=(0.15, 0.15), elongation=(0.0, 0.0),
                irregularity=0.0, focus_blur=(0.0, 0.0), inner_blur=(0.0, 0.0), haze=(0.0, 0.0),
                tint=(0.0, 0.0), highlight=(0.0, 0.0), trails=0.0, height=(0.5, 0.5))
    return WetGlass(**(base | kw))


def test_wet_glass_drops_turn_the_view_over() -> None:
    """A convex drop is a lens: on a scene that brightens downward, the view inside each
    drop brightens upward (Snell's law, not a painted look)."""
    ramp = np.repeat(np.linspace(0, 255, 240, dtype=np.float32)[:, None], 320, axis=1)
    scene = np.repeat(ramp[..., None], 3, axis=2).astype(np.uint8)
    out = _round_drops().apply(scene, seed=2)
    changed = difference_mask(out, scene, 10).astype(np.uint8)
    n, labels = cv2.connectedComponents(changed)
    slopes = []
    for k in range(1, n):
        ys, _ = np.nonzero(labels == k)
        if len(ys) < 150 or ys.min() == 0 or ys.max() == 239:
            continue  # tiny slivers and drops cut by the frame
        slopes.append(np.polyfit(ys, out[labels == k][:, 0].astype(float), 1)[0])
    assert len(slopes) >= 3, "too few whole drops to judge"
    assert np.median(slopes) < -1.0, slopes  # the scene's own slope is +1.07 levels per row


def test_wet_glass_rims_are_dark_and_flat_films_barely_bend() -> None:
    """Steep drop edges reflect totally (dark rims); a flat film of water hardly refracts."""
    grey = np.full((240, 320, 3), 160, np.uint8)
    steep = _round_drops(height=(1.2, 1.2), power=(0.5, 0.5)).apply(grey, seed=1)
    assert (steep.min(axis=2) < 80).mean() > 0.01
    flat = _round_drops(height=(0.03, 0.03)).apply(grey, seed=1)
    assert np.abs(flat.astype(int) - grey).max() <= 2


def test_wet_glass_spans_sizes_and_densities(coffee: np.ndarray) -> None:
    """The size and coverage ranges reach both ends: fine mist of beads to a few big bodies."""
    fine = _round_drops(radius=(0.004, 0.004)).apply(coffee, seed=3)
    big = _round_drops(radius=(0.15, 0.15)).apply(coffee, seed=3)
    for out in (fine, big):
        assert 0.03 < difference_mask(out, coffee).mean() < 0.6
    n_fine = cv2.connectedComponents(difference_mask(fine, coffee).astype(np.uint8))[0]
    n_big = cv2.connectedComponents(difference_mask(big, coffee).astype(np.uint8))[0]
    assert n_fine > 10 * n_big
    sparse = _round_drops(coverage=(0.03, 0.03)).apply(coffee, seed=3)
    dense = _round_drops(coverage=(0.8, 0.8)).apply(coffee, seed=3)
    assert difference_mask(dense, coffee).mean() > 4 * difference_mask(sparse, coffee).mean()


def test_wet_glass_defocus_and_trails(coffee: np.ndarray) -> None:
    sharp = _round_drops().apply(coffee, 1)
    soft = _round_drops(focus_blur=(0.02, 0.02)).apply(coffee, 1)

    def edge_energy(img: np.ndarray) -> float:
        delta = img.astype(np.float32) - coffee.astype(np.float32)
        return float(np.abs(cv2.Laplacian(delta, cv2.CV_32F)).mean())

    assert edge_energy(sharp) > 2 * edge_energy(soft)
    # Sliders move down over time and leave beads behind: more glass is wet, and it changes.
    trails = _round_drops(trails=1.0, radius=(0.04, 0.04))
    assert difference_mask(trails.apply(coffee, 1), coffee).mean() > difference_mask(sharp, coffee).mean()
    assert not np.array_equal(trails.apply(coffee, 1, t=0), trails.apply(coffee, 1, t=25))


def test_snow_bokeh_adds_flakes_at_the_lens(coffee: np.ndarray) -> None:
    plain = Snow(density=(500.0, 500.0)).apply(coffee, 4)
    near = Snow(density=(500.0, 500.0), bokeh=(60.0, 60.0)).apply(coffee, 4)
    # The far flakes draw from their own stream: the bokeh only adds, it moves none of them.
    assert difference_mask(near, coffee).sum() > difference_mask(plain, coffee).sum()
    assert difference_mask(near, plain, 3).mean() > 0.01


def test_dust_smudges_are_large_and_soft(coffee: np.ndarray) -> None:
    smudged = Dust(specks=(0, 0), hairs=(0, 0), smudges=(3, 3), smudge_size=(0.3, 0.3)).apply(coffee, 2)
    delta = np.abs(smudged.astype(np.float32) - coffee.astype(np.float32)).sum(axis=2)
    assert (delta > 6).mean() > 0.1, "three large smudges cover a tenth of the frame"
    assert np.array_equal(Dust(smudges=(0, 0)).apply(coffee, 2), Dust().apply(coffee, 2))


# --- mixtures and config -----------------------------------------------------------------


def test_degrade_applies_in_physical_order(coffee: np.ndarray) -> None:
    kinds = [Jpeg(), GaussianNoise(), Raindrops(), Snow()]
    noisy, mask = degrade(coffee, kinds, seed=9, t=3)
    by_hand = coffee
    for kind in (Snow(), Raindrops(), GaussianNoise(), Jpeg()):
        by_hand = kind.apply(by_hand, 9, 3)
    assert np.array_equal(noisy, by_hand)
    assert np.array_equal(mask, difference_mask(noisy, coffee))
    assert np.array_equal(noisy, degrade(coffee, kinds[::-1], seed=9, t=3)[0])


def test_repeated_kind_gets_its_own_seed(coffee: np.ndarray) -> None:
    once = Mixture((SaltPepper(),)).apply(coffee, 0)
    twice = Mixture((SaltPepper(), SaltPepper())).apply(coffee, 0)
    assert (twice != coffee).any(axis=2).sum() > (once != coffee).any(axis=2).sum()


def test_empty_mixture_returns_a_copy(coffee: np.ndarray) -> None:
    noisy, mask = degrade(coffee, [], seed=0)
    assert np.array_equal(noisy, coffee) and noisy is not coffee and mask.sum() == 0


@pytest.mark.parametrize(
    ("model", "data", "field"),
    [
        (Raindrops, {"count": [10, 5]}, "count"),
        (Raindrops, {"radius": [0.01, 0.9]}, "radius"),
        (Raindrops, {"rim_darkness": 1.5}, "rim_darkness"),
        (Raindrops, {"wetness": 1.0}, "wetness"),
        (WetGlass, {"coverage": [0.5, 0.2]}, "coverage"),
        (WetGlass, {"radius": [0.0001, 0.1]}, "radius"),
        (WetGlass, {"trails": 1.5}, "trails"),
        (Snow, {"bokeh": [-1, 5]}, "bokeh"),
        (Dust, {"smudges": [3, 1]}, "smudges"),
        (DegradeConfig, {"wet_glass": {"focal": [0.1, 1.0]}}, "wet_glass.focal"),
        (GaussianNoise, {"sigma": [-1.0, 5.0]}, "sigma"),
        (Jpeg, {"quality": [0, 50]}, "quality"),
        (Stripes, {"orientation": "diagonal"}, "orientation"),
        (DegradeConfig, {"enabled": ["fog"]}, "enabled"),
        (DegradeConfig, {"enabled": []}, "enabled"),
        (DegradeConfig, {"enabled": ["snow", "snow"]}, "enabled"),
        (DegradeConfig, {"probability": {"snow": 2.0}}, "probability"),
        (DegradeConfig, {"raindrops": {"count": [1, 99999]}}, "raindrops.count"),
        (DegradeConfig, {"h264": {"crff": 30}}, "h264.crff"),
    ],
)
def test_config_validation_names_the_field(
    model: type[BaseModel], data: dict[str, object], field: str
) -> None:
    with pytest.raises(ValidationError) as info:
        model.model_validate(data)
    assert field in str(info.value)


def test_out_of_range_keyword_raises() -> None:
    with pytest.raises(ValidationError, match="rim_darkness"):
        Raindrops(rim_darkness=1.5)


def test_params_are_immutable() -> None:
    with pytest.raises(ValidationError):
        Raindrops().count = (1, 2)  # type: ignore[misc]


def test_config_from_plain_data() -> None:
    config = DegradeConfig.model_validate(
        {
            "enabled": ["raindrops", "jpeg"],
            "raindrops": {"count": [5, 10], "focus_blur": [0, 0]},
            "jpeg": {"quality": [30, 30]},
        }
    )
    assert config.raindrops.count == (5, 10) and config.jpeg.quality == (30, 30)
    assert [k.name for k in config.kinds()] == ["raindrops", "jpeg"]


def test_config_sampling_rules() -> None:
    names: list[KindName] = ["raindrops", "dust", "snow", "gaussian", "jpeg"]
    pick = DegradeConfig(enabled=names, choose="pick", pick=(1, 3))
    each = DegradeConfig(enabled=names, choose="each", probability={"snow": 0.0, "jpeg": 1.0})
    every = DegradeConfig(enabled=names)
    sizes = set()
    for seed in range(60):
        chosen = [k.name for k in pick.sample(seed)]
        assert 1 <= len(chosen) <= 3 and len(set(chosen)) == len(chosen)
        assert chosen == [k.name for k in pick.sample(seed)]
        sizes.add(len(chosen))
        drawn = [k.name for k in each.sample(seed)]
        assert "jpeg" in drawn and "snow" not in drawn
        assert [k.name for k in every.sample(seed)] == names
    assert sizes == {1, 2, 3}


def test_clean_share_leaves_samples_undegraded_and_keeps_older_streams() -> None:
    names: list[KindName] = ["raindrops", "snow", "gaussian"]
    base = DegradeConfig(enabled=names, choose="pick", pick=(1, 2))
    clean = base.model_copy(update={"clean": 0.25})
    left = [len(clean.sample(seed)) == 0 for seed in range(400)]
    assert 0.18 < np.mean(left) < 0.32, np.mean(left)
    assert all(base.sample(seed) for seed in range(400))  # the default never leaves one clean
    # 0 draws nothing extra: a config without the key samples exactly as before it existed.
    zero = base.model_copy(update={"clean": 0.0})
    assert all(zero.sample(s) == base.sample(s) for s in range(50))
    assert all(DegradeConfig(enabled=names, clean=1.0).sample(s) == [] for s in range(5))
    with pytest.raises(ValueError, match="clean"):
        DegradeConfig(enabled=names, clean=1.5)


# --- pairs -----------------------------------------------------------------------------


def _png(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None, path
    return image


def test_write_pairs(tmp_path: Path, photos: dict[str, np.ndarray]) -> None:
    config = DegradeConfig(enabled=["raindrops", "gaussian"], choose="each")
    small = {n: cv2.resize(p, (160, 120)) for n, p in photos.items()}
    names = write_pairs(small.items(), tmp_path / "pairs", config, seed=1)
    assert names == list(small)
    for name, clean in small.items():
        read = {f: _png(tmp_path / "pairs" / f / f"{name}.png") for f in ("noisy", "clean", "mask")}
        assert np.array_equal(read["clean"][..., ::-1], clean)
        assert read["noisy"].shape == clean.shape and not np.array_equal(read["noisy"][..., ::-1], clean)
        mask = difference_mask(np.ascontiguousarray(read["noisy"][..., ::-1]), clean)
        assert np.array_equal(read["mask"], (mask * 255).astype(np.uint8))
    # Same names and seed -> same pairs, whatever the order.
    again = write_pairs(list(small.items())[::-1], tmp_path / "again", config, seed=1)
    assert sorted(again) == sorted(names)
    for name in names:
        a = _png(tmp_path / "pairs" / "noisy" / f"{name}.png")
        assert np.array_equal(a, _png(tmp_path / "again" / "noisy" / f"{name}.png"))


def test_write_pairs_plain_arrays(tmp_path: Path, coffee: np.ndarray) -> None:
    names = write_pairs([coffee[:64, :64], coffee[64:128, :64]], tmp_path, DegradeConfig(), masks=False)
    assert names == ["000000", "000001"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clean", "noisy"]


def test_contact_sheet(coffee: np.ndarray) -> None:
    small = cv2.resize(coffee, (160, 100))
    sheet = contact_sheet(small, columns=5)
    assert sheet.dtype == np.uint8 and sheet.shape[1] == 5 * 160 and sheet.shape[0] > 2 * 100
