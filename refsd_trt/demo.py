"""``make demo``: anonymize the photos with people that ship inside installed packages, offline on
CPU with the embedded default, and write a contact sheet beside the outputs: each input, the
masks and keypoints its people were found with, and the output."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from refsd_trt.api import Anonymizer
from refsd_trt.config import RunConfig
from refsd_trt.contact_sheet import save_contact_sheet
from refsd_trt.io import Manifest, read_image
from refsd_trt.overlay import draw_detections
from refsd_trt.runner import MANIFEST_NAME, Runner
from refsd_trt.samples import sample_image_paths

SHEET_NAME = "contact_sheet.png"


def _pixels(path: str) -> np.ndarray:
    return read_image(path).pixels.permute(1, 2, 0).numpy()


def run_demo(out_dir: Path, preset: str = "lite") -> int:
    inputs = sample_image_paths()
    if not inputs:
        print("error: no bundled sample photos found (install scikit-image or ultralytics-opencv-headless)")
        return 1
    config = RunConfig(preset=preset)
    runner = Runner(lambda: Anonymizer.from_preset(config=config), out_dir, config.batch_size)
    summary = runner.run([str(p) for p in inputs])
    print(summary.table())
    latest = {r["input"]: r for r in Manifest(out_dir / MANIFEST_NAME).records()}  # reruns append lines
    originals = {p.name: p for p in inputs}  # the manifest names each file argument by its name only
    rows = []
    for record in latest.values():
        if record["status"] != "ok" or record["input"] not in originals:
            continue
        name, source = record["input"], originals[record["input"]]
        people = record["people_count"]
        original = _pixels(source)
        # Detected again for the picture (the run keeps no masks): the same detector, the same people.
        (found,) = runner.anonymizer.detector.detect([read_image(source).pixels])
        rows.append([(f"{name}: input", original), (f"{len(found)} people: masks, keypoints", draw_detections(
            original, found)), (f"{preset}: {people} people replaced", _pixels(out_dir / record["output"]))])
    sheet = save_contact_sheet(rows, out_dir / SHEET_NAME, height=320)
    print(f"anonymized images, {MANIFEST_NAME} and the contact sheet (input, masks and keypoints, output) are in {out_dir.resolve()}")
    print(f"contact sheet: {sheet.resolve()}")
    return summary.exit_code
