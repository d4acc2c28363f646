"""``python -m bench.faces [--images N] [--repeat N]``: face recall and detection cost.

Recall and false positives per face width, per detector (the default, MTCNN with its turned
passes, against MTCNN upright only and the Haar fallback), on real faces composited on real
scenes (bench/face_composites.py), at the service's minimum face; then detection ms per image
at 224 px and 12 MP, and the pixels each detector scans there. Writes bench/results/faces.json
and faces.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from bench.face_composites import SCALES, composites, score, size_bin
from bench.machine import machine
from service.engine import cpu_features
from service.imaging.faces import FaceCropper, FaceDetector, HaarDetector, MTCNNDetector
from service.imaging.faces.mtcnn_nets import PACKAGE
from service.settings import Settings
from tests.server_process import ROOT

BIN_NAMES = ("40-59 px", "60-99 px", ">= 100 px")


def recall(detector: FaceDetector, min_size: int, count: int, seed: int) -> dict[str, Any]:
    """Per source: faces found / faces per size bin, false positives per image, ms per image."""
    out: dict[str, Any] = {}
    for source in ("astronaut", "lfw"):
        found: dict[str, list[bool]] = {}
        by_angle: dict[str, list[bool]] = {}
        false_positives, seconds = 0, 0.0
        images = composites(source, count, seed)
        for composite in images:
            start = time.perf_counter()
            faces = detector.detect(composite.image, min_size)
            seconds += time.perf_counter() - start
            hits, extra = score(faces, composite.faces)
            false_positives += extra
            for truth, hit in zip(composite.faces, hits, strict=True):
                found.setdefault(size_bin(truth.width), []).append(hit)
                by_angle.setdefault(f"{abs(truth.angle)} deg", []).append(hit)
        out[source] = {
            "images": len(images),
            "recall": {b: sum(h) / len(h) for b, h in sorted(found.items())},
            "faces": {b: len(h) for b, h in sorted(found.items())},
            "recall_by_turn": {a: sum(h) / len(h) for a, h in sorted(by_angle.items())},
            "recall_ge_40": sum(sum(h) for h in found.values()) / sum(map(len, found.values())),
            "false_positives_per_image": false_positives / len(images),
            "ms_per_image": 1000 * seconds / len(images),
        }
    return out


def frames() -> dict[str, Image.Image]:
    from skimage import data

    face = Image.fromarray(data.astronaut())
    twelve_mp = Image.new("RGB", (4000, 3000), (120, 120, 120))
    twelve_mp.paste(face.resize((3000, 3000), Image.Resampling.BICUBIC), (500, 0))
    return {"224 px": face.resize((224, 224), Image.Resampling.BICUBIC), "12 MP": twelve_mp}


def median_ms(action: Callable[[], object], repeat: int) -> float:
    action()  # warm-up: loads the cascade in this thread
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def cost(detector: FaceDetector, min_size: int, repeat: int) -> dict[str, Any]:
    out = {}
    for name, image in frames().items():
        cropper = FaceCropper(detector, size=224, min_size=min_size)
        out[name] = {
            "faces": cropper.detect(image).found,
            "detect_ms": median_ms(lambda c=cropper, i=image: c.detect(i), repeat),
            "scanned_pixels": detector.scanned_pixels(*image.size, min_size),
            "smallest_face_px": detector.smallest_findable(*image.size, min_size),
        }
    return out


def turns(recall_by_turn: dict[str, float]) -> str:
    return " / ".join(f"{recall_by_turn.get(f'{a} deg', float('nan')):.2f}" for a in (0, 15, 30))


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"Machine: {results['machine']}; "
        f"min face {results['min_face_px']} px, cap {results['max_scan_pixels']} px scanned, "
        f"turned passes -/+{results['turn_degrees']} deg, layout seed {results['seed']}",
        "",
        "| detector | faces | images | recall 40-59 px | 60-99 px | >= 100 px | recall >= 40 px "
        "| false positives / image | ms / image (1280x960) | recall turned 0 / 15 / 30 deg |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in results["detectors"].items():
        for source, r in row["recall"].items():
            bins = " | ".join(f"{r['recall'].get(b, float('nan')):.2f}" for b in BIN_NAMES)
            lines.append(
                f"| {name} | {source} | {r['images']} | {bins} | {r['recall_ge_40']:.2f} "
                f"| {r['false_positives_per_image']:.2f} | {r['ms_per_image']:.0f} "
                f"| {turns(r['recall_by_turn'])} |"
            )
    lines += [
        "",
        "| detector | image | faces | detect ms | pixels scanned | smallest face px |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, row in results["detectors"].items():
        for image, c in row["cost"].items():
            lines.append(
                f"| {name} | {image} | {c['faces']} | {c['detect_ms']:.0f} "
                f"| {c['scanned_pixels']:,} | {c['smallest_face_px']} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.faces", description=__doc__)
    parser.add_argument("--images", type=int, default=40, help="composites per face source")
    parser.add_argument(
        "--seed", type=int, default=2, help="layout seed (0 and 1 chose the thresholds)"
    )
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per cost figure")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    settings = Settings()
    min_size, cap = settings.min_face_px, settings.face_max_scan_pixels
    detectors: dict[str, FaceDetector] = {
        f"mtcnn (default, {PACKAGE} weights)": MTCNNDetector(cap, settings.face_turn_degrees),
        "mtcnn, upright pass only (OCLIP_FACE_TURN_DEGREES=0)": MTCNNDetector(cap, 0),
        "haar (fallback)": HaarDetector(max_pixels=cap),
    }
    results: dict[str, Any] = {
        "machine": machine(),
        "flags": cpu_features(),
        "min_face_px": min_size,
        "max_scan_pixels": cap,
        "turn_degrees": settings.face_turn_degrees,
        "scales": SCALES,
        "seed": args.seed,
        "load_before": " ".join(f"{x:.1f}" for x in os.getloadavg()),
        "detectors": {},
    }
    for name, detector in detectors.items():
        row = {"recall": recall(detector, min_size, args.images, args.seed)}
        row["cost"] = cost(detector, min_size, args.repeat)
        results["detectors"][name] = row
        print(f"{name}: {json.dumps(row)}", flush=True)
    results["load_after"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "faces.json").write_text(json.dumps(results, indent=2) + "\n")
    table = markdown(results)
    (args.out / "faces.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
