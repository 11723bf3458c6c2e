"""Evaluators are independent: no judge may share a model file with what it judges.

Compared by content (SHA-256), not by name: the files of every evaluator model against the shared
detector every method gets its people from and the detection models of every preset evaluated.
The judges use no diffusion model, so the presets' diffusion weights cannot overlap and are not read.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from refsd_trt.eval.models import MODELS
from refsd_trt.io import sha256_file

DETECTION_ROLES = ("detector", "pose")


class NotIndependent(RuntimeError):
    """A judge would share a model with a method it judges."""


def _files(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]


def _preset_files(name: str) -> dict[str, list[Path]]:
    from refsd_trt.detection.lite import model_files
    from refsd_trt.methods import model_path
    from refsd_trt.models.loaders import ModelNotFound
    from refsd_trt.presets import PRESETS

    preset = PRESETS[name]
    if preset.method == "lite":
        return {"detector": model_files()}
    files = {}
    for role in DETECTION_ROLES:
        if role in preset.models:
            try:
                files[role] = _files(model_path(preset, role))
            except ModelNotFound:
                files[role] = []
    return files


def check(presets: Sequence[str], shared_detector: Sequence[Path]) -> dict:
    """The evaluators' and the methods' model files with their hashes; ``NotIndependent`` on overlap."""
    judges = {key: m.path() for key, m in MODELS.items() if m.file}
    judge_hashes = {sha256_file(path): key for key, path in judges.items()}
    used = {"shared detector": list(shared_detector)}
    for name in presets:
        used.update({f"{name} {role}": paths for role, paths in _preset_files(name).items()})
    methods = {}
    for use, paths in used.items():
        entries = []
        for path in paths:
            digest = sha256_file(path)
            if digest in judge_hashes:
                raise NotIndependent(f"{use} ({path}) is the evaluator model {judge_hashes[digest]}: "
                                     "an evaluator may not judge with the model it judges")
            entries.append({"file": str(path), "sha256": digest})
        methods[use] = entries
    return {
        "evaluators": {key: {"role": MODELS[key].role, "file": str(path), "licence": MODELS[key].licence,
                             "sha256": digest}
                       for digest, key in judge_hashes.items() for path in [judges[key]]},
        "methods": methods,
        "statement": "no evaluator shares a model file (by SHA-256) with the shared detector or with the "
                     f"detection models of {', '.join(presets) or 'any preset'}; the evaluators use no "
                     "diffusion model",
        "identity_gate": "the identity gate every preset runs after its method (refsd_trt.identity_gate) "
                         "compares faces with the face judge's own dlib descriptor, the model issue 13 names: "
                         "for gated methods a face within dlib's threshold is filled by construction, so their "
                         "face-leak figure checks the gate rather than measuring the method independently; "
                         "the near-identity-ungated row shows what the gate catches. The appearance, people, "
                         "pose and background judges share no model with any method",
    }
