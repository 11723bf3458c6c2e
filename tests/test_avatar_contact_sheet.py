"""The contact sheet of avatars over the bundled sample photos (written as a PNG to look at)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from refsd_trt.avatar import (
    SAMPLE_PERSON_BOXES,
    anny_body,
    avatar_meshes,
    avatar_preview,
    contact_sheet,
    fit_boxes,
)


def test_contact_sheet_over_sample_photos(sample_images, tmp_path):
    named = [(name, image) for name, image in sample_images if name in SAMPLE_PERSON_BOXES]
    assert named, "no sample photo found: ultralytics or scikit-image should be installed"
    sheet = contact_sheet(named, body=anny_body(), row_height=240)
    path = tmp_path / "avatar_contact_sheet.png"
    Image.fromarray(sheet).save(path)
    print(f"contact sheet: {path}")
    assert sheet.shape[0] == 240 * len(named) and sheet.dtype == np.uint8
    assert sheet.std() > 20  # photos, not an empty canvas


def test_preview_puts_avatars_in_their_boxes(sample_images):
    name, image = next((n, i) for n, i in sample_images if n == "bus")
    boxes = SAMPLE_PERSON_BOXES[name]
    changed = np.abs(avatar_preview(image, boxes, anny_body()).astype(int) - image.astype(int)).sum(-1) > 0
    inside = np.zeros_like(changed)
    for x0, y0, x1, y1 in boxes:
        person = changed[int(y0):int(y1), int(x0):int(x1)]
        assert person.mean() > 0.25, (x0, y0, person.mean())  # the avatar fills a fair part of its box
        inside[int(y0) - 2:int(y1) + 2, max(int(x0) - 2, 0):int(x1) + 2] = True
    assert changed[~inside].sum() <= 0.01 * changed.sum()  # and stays in it


def test_avatar_colours_are_clothing_not_noise():
    body = anny_body()
    boxes = torch.tensor([[10.0, 10.0, 118.0, 250.0]])
    fit = fit_boxes(body, boxes, (256, 128), body.sample_shape({}, 7)[None])
    meshes = avatar_meshes(body, fit.params, [{"age": "adult"}], [7])
    # Six regions, one albedo each: the avatar carries a handful of flat colours.
    assert len(torch.unique(meshes.colors[0], dim=0)) <= 6
