"""The refsd-trt side: the public ``Anonymizer`` exactly as a user runs it, batch by batch.

Stage times are the ones the Anonymizer reports per batch, with ``profile_stages`` on so a GPU's
asynchronous work is charged to the stage that queued it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from refsd_trt.api import Anonymizer
from refsd_trt.bench.sides import OTHER, Anonymized, canonical
from refsd_trt.engine.base import Engine
from refsd_trt.io import read_image, write_image
from refsd_trt.types import PersonDetections


class RefsdTrtSide:
    name = "refsd-trt"

    def __init__(self, anonymizer: Anonymizer):
        self.anonymizer = anonymizer
        anonymizer.profile_stages = True
        self.batch_size = anonymizer.config.batch_size

    @property
    def engines(self) -> Mapping[str, Engine]:
        return self.anonymizer.engines

    def decode(self, paths: Sequence[Path]) -> list[torch.Tensor]:
        return [read_image(p).pixels for p in paths]

    def detect(self, images: Sequence[torch.Tensor]) -> list[PersonDetections]:
        device = self.anonymizer.device
        return self.anonymizer.detector.detect([image.to(device) for image in images])

    def anonymize(self, images: Sequence[torch.Tensor], people: Sequence[PersonDetections],
                  keys: Sequence[str]) -> Anonymized:
        outputs, counts, stages = [], [], {}
        for start in range(0, len(images), self.batch_size):
            chunk = slice(start, start + self.batch_size)
            began = time.perf_counter()
            results = self.anonymizer(images[chunk], detections=people[chunk], image_keys=keys[chunk])
            wall = time.perf_counter() - began
            batch = canonical(results[0].timings)  # the batch's stage times, the same on every result
            batch[OTHER] = wall - sum(batch.values())
            for stage, seconds in batch.items():
                stages[stage] = stages.get(stage, 0.0) + seconds
            outputs += [r.image for r in results]
            counts += [len(r.people) for r in results]
        return Anonymized(outputs, counts, stages)

    def encode(self, images: Sequence, folder: Path) -> None:
        for i, image in enumerate(images):
            write_image(torch.from_numpy(image).permute(2, 0, 1), folder / f"{i:04d}.png")
