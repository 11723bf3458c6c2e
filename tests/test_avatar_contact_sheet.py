"""The contact sheet of avatars over the bundled sample photos (written as a PNG to look at)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from refsd_trt.avatar import (
    anny_body,
    avatar_meshes,
    avatar_preview,
    contact_sheet,
    fit_boxes,
)
from refsd_trt.contact_sheet import LABEL_HEIGHT
from refsd_trt.samples import SAMPLE_PEOPLE


def test_contact_sheet_over_sample_photos(sample_images, tmp_path):
    named = [(name, image) for name, image in sample_images if name in SAMPLE_PEOPLE]
    assert named, "no sample photo found: ultralytics or scikit-image should be installed"
    sheet = contact_sheet(named, body=anny_body(), row_height=240)
    path = tmp_path / "avatar_contact_sheet.png"
    Image.fromarray(sheet).save(path)
    print(f"contact sheet: {path}")
    assert sheet.shape[0] == 6 + len(named) * (240 + LABEL_HEIGHT + 6) and sheet.dtype == np.uint8  # 6 px gaps
    assert sheet.std() > 20  # photos, not an empty canvas


def test_preview_puts_avatars_in_their_boxes(sample_images):
    image = next(i for n, i in sample_images if n == "bus")
    # Boxes at least as wide as the avatar fitted to their height (its walkers and the person cut
    # off at the left edge): the tight box around the side-on man on the right (SAMPLE_PEOPLE, 123 px
    # for 535 px tall) is narrower than a standing avatar, which then shows 19 px beside it.
    boxes = [(50, 400, 245, 905), (222, 405, 345, 860), (668, 390, 810, 880), (0, 550, 65, 875)]
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
