"""The Python API for embedding refsd-trt: build once, call per batch.

    from refsd_trt import Anonymizer
    anonymizer = Anonymizer.from_preset("lite")
    results = anonymizer([image_a, image_b])   # HxWx3 uint8 RGB arrays or (3,H,W) uint8 tensors
    results[0].image, results[0].people

Engines are built in ``from_preset`` and reused by every call, so a server keeps one
``Anonymizer`` and calls it from its request loop (one call at a time per instance).
Privacy fails closed: whatever a stage does, every detected person leaves either replaced by the
method or filled by ``failsafe``; a person whose face the identity gate (``identity_gate``) still
matches to the original is filled too. Only a failed detection yields no image (``DetectionFailed``).
With ``stage_timeout_s``, a stage past its limit fails its batch closed at once; while it still runs,
the next call raises ``StageHung``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import numpy as np
import torch

from refsd_trt import failsafe
from refsd_trt.attributes import DEFAULT_TEMPLATE, PersonPrompt, person_prompt
from refsd_trt.config import RunConfig
from refsd_trt.detection import PersonDetector
from refsd_trt.detection.masks import removal_masks
from refsd_trt.identity_gate import FaceReferences, IdentityCheck, IdentityGate
from refsd_trt.io.errors import one_line, with_causes
from refsd_trt.presets import PRESETS, Preset, choose_default
from refsd_trt.stages import Method, StageHung, StageTimer, Watchdog
from refsd_trt.types import PersonDetections, PersonRecord

log = logging.getLogger(__name__)


class DetectionFailed(RuntimeError):
    """People could not be found, so nothing about the image can be promised: no output."""


@dataclass
class AnonymizedImage:
    image: np.ndarray  # HxWx3 uint8 RGB, the input's size
    people: list[PersonRecord]
    timings: dict[str, float]  # seconds per stage for the batch this image was part of
    method: str
    preset: str
    anonymizes: bool  # False for the tiny preset: random models replace nothing meaningfully
    notes: list[str] = field(default_factory=list)

    @property
    def fallbacks(self) -> list[str]:
        return [p.fallback for p in self.people if p.fallback]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but torch sees no CUDA device here")
    return device


def _as_tensor(image: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 RGB array, got {image.shape} {image.dtype}")
        image = torch.from_numpy(image.copy()).permute(2, 0, 1)  # never alias (or need to write) the caller's array
    if image.ndim != 3 or image.shape[0] != 3 or image.dtype != torch.uint8:
        raise ValueError(f"expected a (3, H, W) uint8 tensor, got {tuple(image.shape)} {image.dtype}")
    return image.to(device).contiguous()


def covering(detections: PersonDetections, index: int = 0) -> PersonDetections:
    """Detections given to the API, made safe for every method: box-only detectors are common, so a
    person whose mask is empty, or whose masks were not made by a segmentation model, is removed as
    box ∪ mask (the methods paint and check masks only). Non-finite boxes or scores are refused."""
    if not (torch.isfinite(detections.boxes).all() and torch.isfinite(detections.scores).all()):
        raise ValueError(f"detections for image {index}: non-finite boxes or scores")
    return dataclasses.replace(detections, masks=removal_masks(detections))


def pixel_key(image: torch.Tensor) -> str:
    """A content key for images given without one (the CLI passes the file's sha256 instead)."""
    return hashlib.sha256(image.cpu().numpy().tobytes()).hexdigest()


def build_gate(mode: str) -> tuple[IdentityGate | None, str]:
    """The identity gate for ``verify_identity`` (auto | on | off), or None and why it is off.
    ``on`` without the face models is a configuration error; ``auto`` runs it wherever they are."""
    if mode == "off":
        return None, "identity verification off (verify_identity = off)"
    gate, missing = IdentityGate.available()
    if gate is None and mode == "on":
        raise ValueError(f"verify_identity = on, but {missing}")
    return gate, f"identity verification unavailable: {missing}" if gate is None else ""


class Anonymizer:
    def __init__(self, preset: Preset, config: RunConfig, detector: PersonDetector, method: Method,
                 gate: IdentityGate | None = None, gate_off_why: str = "identity verification off"):
        self.preset, self.config, self.detector, self.method = preset, config, detector, method
        self.gate, self.gate_off_why = gate, gate_off_why
        self.watchdog = Watchdog()  # with stage_timeout_s, a stage past it fails its batch closed, never blocks
        self.device = method.device
        self.template = config.prompt or DEFAULT_TEMPLATE
        self.profile_stages = False  # benchmarks set this: synchronise the device at stage boundaries

    @classmethod
    def from_preset(cls, name: str | None = None, config: RunConfig | None = None, **overrides) -> Anonymizer:
        """``name`` None: the best preset whose weights are present (logged with the reason).
        ``overrides`` are RunConfig fields (e.g. ``device="cuda"``, ``steps=20``)."""
        from refsd_trt.methods import build_detector, build_method

        config = (config or RunConfig()).merged(overrides)
        if name is None and config.preset is None:
            preset, why = choose_default()
            log.info("using %s", why)
        else:
            key = name or config.preset
            if key not in PRESETS:
                raise ValueError(f"unknown preset {key!r}; known: {', '.join(PRESETS)}")
            preset = PRESETS[key]
        config = config.resolved(preset)  # effective: what builds the method and what the manifest records
        device = resolve_device(config.device)
        if preset.method == "lite" and device.type != "cpu":
            log.info("the lite preset runs on the CPU by design (classical inpainting, GrabCut); ignoring %s", device)
            device = torch.device("cpu")
        gate, why = build_gate(config.verify_identity)
        if gate is None:
            log.info("%s", why)
        return cls(preset, config, build_detector(preset, config, device), build_method(preset, config, device),
                   gate, why)

    @property
    def engines(self) -> dict:
        return {**getattr(self.detector, "engines", {}), **self.method.engines}

    def prompts_for(self, keys: Sequence[str], detections: Sequence[PersonDetections],
                    person_keys: Sequence[Sequence[str]] | None = None) -> list[list[PersonPrompt]]:
        """One prompt (attributes, seed) per person, keyed by (run seed, image key, person key): the
        person's index in the image by default, or ``person_keys`` (e.g. a video's track ids, so a
        tracked person keeps one seed, look and avatar shape in every frame)."""
        c = self.config
        if person_keys is None:
            person_keys = [list(range(len(det))) for det in detections]
        for i, (det, pk) in enumerate(zip(detections, person_keys, strict=True)):
            if len(pk) != len(det):
                raise ValueError(f"image {i}: {len(pk)} person keys for {len(det)} people")
        return [[person_prompt(c.seed, key, pk[j], c.attributes, self.template) for j in range(len(det))]
                for key, det, pk in zip(keys, detections, person_keys)]

    def detect(self, images: Sequence[np.ndarray | torch.Tensor]) -> tuple[list[PersonDetections], float]:
        """The built-in detector alone (e.g. to track people before anonymizing them): one record per
        image, and the seconds it took. Raises ``DetectionFailed`` as a call does."""
        tensors = [_as_tensor(image, self.device) for image in images]
        timer = StageTimer(self.device, sync=self.profile_stages, limit_s=self.config.stage_timeout_s)
        return self._detect(tensors, timer), timer.seconds.get("detect", 0.0)

    def _detect(self, tensors: list[torch.Tensor], timer: StageTimer) -> list[PersonDetections]:
        try:
            with timer("detect"):
                return self.watchdog.run(lambda: self.detector.detect(tensors), timer)
        except StageHung:
            raise
        except Exception as exc:
            raise DetectionFailed(f"person detection failed: {type(exc).__name__}: {exc}") from exc

    def __call__(self, images: Sequence[np.ndarray | torch.Tensor], detections: Sequence[PersonDetections] | None = None,
                 image_keys: Sequence[str] | None = None,
                 person_keys: Sequence[Sequence[str]] | None = None) -> list[AnonymizedImage]:
        """Anonymize a batch. ``detections`` (one record per image, e.g. from your own detector)
        skips the built-in detector; ``image_keys`` (e.g. file hashes) seed the per-person prompts;
        ``person_keys`` (one key per person of each image, with ``detections``) replace the person's
        index in that seed, e.g. a track id."""
        tensors = [_as_tensor(image, self.device) for image in images]
        keys = list(image_keys) if image_keys is not None else [pixel_key(t) for t in tensors]
        timer = StageTimer(self.device, sync=self.profile_stages, limit_s=self.config.stage_timeout_s)
        if detections is None:
            if person_keys is not None:
                raise ValueError("person_keys name the people of given detections; pass detections too")
            detections = self._detect(tensors, timer)
        else:
            detections = [covering(d.to(self.device), i) for i, d in enumerate(detections)]
        prompts = self.prompts_for(keys, detections, person_keys)
        failure = None
        outputs: list[torch.Tensor] | None = None
        # The gate's look at the original faces needs nothing of the method's output: it runs on a
        # second thread while the method does (dlib and torch release the GIL in their native code).
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="identity-references") as pool:
            references = [self._references(pool, t, d) for t, d in zip(tensors, detections)]
            if any(len(d) for d in detections):
                try:
                    outputs = self.watchdog.run(lambda: self.method(tensors, detections, prompts, timer), timer)
                except StageHung:
                    raise
                except Exception as exc:  # noqa: BLE001 -- any stage failure: every person of the batch is filled
                    failure = one_line(exc)
                    log.warning("%s method failed for a batch of %d image(s): %s", self.method.name, len(tensors),
                                with_causes(exc))
            else:
                outputs = [t.float() / 255 for t in tensors]
            with timer("verify"):  # what the references take beyond the method, under the stage's limit
                wait([r for r in references if r is not None])
        # Every reference is done before the checks: they use the same dlib detector, which must not
        # run on two threads at once.
        return [self._finish(i, tensors[i], detections[i], prompts[i], outputs, failure, timer, references[i])
                for i in range(len(tensors))]

    def _references(self, pool: ThreadPoolExecutor, image: torch.Tensor,
                    det: PersonDetections) -> Future[dict[int, FaceReferences]] | None:
        """The gate's references for all of one image's people, started on ``pool``; None without a
        gate or without people."""
        if self.gate is None or not len(det):
            return None
        keypoints = det.keypoints.cpu().numpy() if det.keypoints is not None else None
        return pool.submit(self.gate.references, image.permute(1, 2, 0).cpu().numpy(),
                           det.boxes.cpu().numpy(), keypoints, range(len(det)))

    def _size_notes(self, box: torch.Tensor, filled: bool) -> list[str]:
        """Recall first: small people are never skipped. Say how a small one was handled."""
        side = self.method.settings.crop_scale * float((box[2:] - box[:2]).max())
        if filled or side >= self.method.working_size:
            return []
        return [f"small person: {side:.0f} px crop upscaled x{self.method.working_size / side:.1f} "
                f"to {self.method.working_size} px"]

    def _finish(self, i: int, original: torch.Tensor, det: PersonDetections, prompts: Sequence[PersonPrompt],
                outputs: list[torch.Tensor] | None, failure: str | None, timer: StageTimer,
                references: Future[dict[int, FaceReferences]] | None) -> AnonymizedImage:
        """Bring one image to the host, check every person was replaced, and fill those that were not."""
        source = original.permute(1, 2, 0).cpu().numpy()
        masks = det.masks.cpu().numpy().astype(bool)
        reasons: dict[int, str] = {}
        output = None
        if outputs is not None:
            out = outputs[i]
            finite = torch.isfinite(out)
            broken = (det.masks & ~finite.all(dim=0)).flatten(1).any(dim=1)
            for j in torch.nonzero(broken).flatten().tolist():
                reasons[j] = "non-finite values in the method's output"
            # Non-finite pixels outside the people are method garbage, not a privacy matter: keep the input there.
            out = torch.where(finite, out, original.float() / 255)
            output = (out.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        else:
            reasons = dict.fromkeys(range(len(det)), failure or "no output")
        safe, filled = failsafe.enforce(source, output, masks, self.config.dilate_px, tuple(reasons))
        for j in filled:
            reasons.setdefault(j, "person still mostly unchanged after the method")
        with timer("verify"):
            safe, checks = self._verify(source, safe, det, masks, reasons, references)
        height, width = source.shape[:2]
        low = det.low_confidence.tolist() if det.low_confidence is not None else [False] * len(det)
        notes_per_person = [[f"low-confidence person (score {float(det.scores[j]):.2f}), filled"] if low[j]
                            else self._size_notes(det.boxes[j], j in reasons) for j in range(len(det))]
        people = [
            PersonRecord(
                box=tuple(round(float(v), 2) for v in det.boxes[j].tolist()),
                score=round(float(det.scores[j]), 4),
                coverage=round(float(masks[j].sum()) / (height * width), 6),
                prompt=prompts[j].prompt, seed=prompts[j].seed, attributes=prompts[j].attributes,
                fallback=f"filled ({reasons[j]})" if j in reasons else None, notes=notes_per_person[j],
                identity=checks[j],
            )
            for j in range(len(det))
        ]
        notes = [] if self.preset.anonymizes else ["tiny preset: random models, NOT an anonymization"]
        return AnonymizedImage(safe, people, dict(timer.seconds), self.method.name, self.preset.name,
                               self.preset.anonymizes, notes)

    def _verify(self, source: np.ndarray, output: np.ndarray, det: PersonDetections, masks: np.ndarray,
                reasons: dict[int, str], references: Future[dict[int, FaceReferences]] | None,
                ) -> tuple[np.ndarray, dict[int, dict]]:
        """Run the identity gate on the people the method replaced, with the ``references`` to their
        original faces found beside the method; fill those still recognisable (adding their reason to
        ``reasons``). Returns the image and each person's manifest record. If the gate itself breaks
        (there or here), nobody it should have checked can be vouched for: all are filled."""
        radius = self.config.dilate_px
        checks = {j: {"verified": False, "why": "filled before verification"} for j in reasons}
        todo = [j for j in range(len(det)) if j not in reasons]
        if not todo:
            return output, checks
        if self.gate is None:
            return output, {**checks, **{j: {"verified": False, "why": self.gate_off_why} for j in todo}}
        try:
            # The fill is a whole-image inpaint the gate needs only for close calls: made on demand.
            null = functools.partial(failsafe.fill_people, source, masks[todo], radius)
            found: dict[int, IdentityCheck] = self.gate.check(output, null, references.result(), todo)
        except Exception as exc:  # noqa: BLE001 -- unverifiable means unsafe: fill them
            why = f"identity verification failed: {one_line(exc)}"
            log.warning("%s; filling %d person(s)", why, len(todo))
            reasons.update(dict.fromkeys(todo, why))
            return failsafe.fill_people(output, masks[todo], radius), {
                **checks, **{j: {"verified": False, "why": why} for j in todo}}
        matched = [j for j in todo if found[j].matched]
        for j in matched:
            reasons[j] = f"identity still matched: face distance {found[j].distance:.2f} under {found[j].threshold:.2f}"
        if matched:
            output = failsafe.fill_people(output, masks[matched], radius)
        return output, {**checks, **{j: found[j].to_record() for j in todo}}
