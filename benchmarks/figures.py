"""Figures for the README, from the bundled model (or --model):

    python benchmarks/figures.py --out benchmarks/results

* ``sample_still.jpg``: one frame of the bundled sample clip: input | attention | output.
* ``real_rain.jpg``: the five real wet-glass photos in ../shared/real-rain: input | the
  original authors' released model | ours (no ground truth exists: judge by eye); with
  ``--baseline MODEL``, that model's output in a fourth column, to see what a change did.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import av
import cv2
import numpy as np

from stream_denoise.data import SAMPLE_CLIP
from stream_denoise.denoiser import Denoiser

REAL_RAIN = Path(__file__).resolve().parents[2] / "shared" / "real-rain"


def label(img: np.ndarray, text: str) -> np.ndarray:
    out = img.copy()
    cv2.putText(out, text, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 4, cv2.LINE_AA)
    cv2.putText(out, text, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def heat(att: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(cv2.applyColorMap(att, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)


def save(path: Path, rgb: np.ndarray) -> None:
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 88])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="lite")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--frame", type=int, default=60)
    p.add_argument("--baseline", help="a model to show beside ours on the real photos (e.g. the last shipped)")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    den = Denoiser.from_pretrained(args.model)
    base = Denoiser.from_pretrained(args.baseline) if args.baseline else None

    with av.open(str(SAMPLE_CLIP)) as c:
        frame = next(f for i, f in enumerate(c.decode(video=0)) if i == args.frame).to_ndarray(format="rgb24")
    r = den.process(frame[None], attention=True)
    save(out / "sample_still.jpg", np.hstack([label(frame, "input"), label(heat(r.attention[0]), "attention"),
                                              label(r.images[0], "output")]))

    def rgb(path: Path) -> np.ndarray:
        return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)

    def half(image: np.ndarray) -> np.ndarray:
        return cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA)

    rows = []
    for case in sorted((REAL_RAIN / "input").glob("*.jpg")):
        inp, ref = rgb(case), rgb(REAL_RAIN / "reference-output" / case.name)
        ours = den(inp[None])[0]
        cells = [label(inp, f"{case.stem} input"), label(cv2.resize(ref, inp.shape[1::-1]), "authors' model"),
                 label(ours, f"ours ({args.model})")]
        if base is not None:
            cells.append(label(base(inp[None])[0], f"before ({args.baseline})"))
        rows.append(np.hstack([half(c) for c in cells]))
    if rows:
        save(out / "real_rain.jpg", np.vstack(rows))
    print(f"figures in {out}")


if __name__ == "__main__":
    main()
