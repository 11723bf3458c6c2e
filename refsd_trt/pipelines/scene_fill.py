"""Fill the holes people leave with the scene around them, not a smear.

Telea's front marching, run over a person-sized hole, pulls the border colours inward into
streaks. Each hole here is filled from a patch of the same photo beside it (same rows first, so a
street stays a street and a horizon stays level), Poisson-blended into the hole's border so the
seam disappears. A hole with no clean patch anywhere near it (people side by side across the
frame) gets a smooth fill (the fail-safe's pull-push) plus the texture just outside its border, reflected
inwards. Both sources lie entirely outside every hole, so no pixel of any detected person is
copied. The fail-safe keeps its own, separate fill (``refsd_trt.failsafe``).
"""

from __future__ import annotations

import cv2
import numpy as np
import scipy.fft

from refsd_trt import failsafe

PAD = 16  # the blend needs the hole's bounding box inside the image, with room for its edge: work padded
GAP = 4  # pixels between a hole's box and its source patch
MAX_HOLE_SHARE = 0.002  # a source patch may graze at most this share of hole pixels (mask edges)


def _offsets(w: int, h: int) -> list[tuple[int, int]]:
    """Where to take a hole's pixels from, nearest first: sideways by one, then two, three widths
    (the same rows: a street stays a street), then up and down by one, two heights."""
    out = []
    for k in (1, 2, 3):
        out += [(0, -k * (w + GAP)), (0, k * (w + GAP))]
    for k in (1, 2):
        out += [(-k * (h + GAP), 0), (k * (h + GAP), 0)]
    return out


def _patched(image: np.ndarray, holes: np.ndarray, component: np.ndarray,
             box: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """``component``'s pixels copied from the nearest shifted places that are in the image and in
    no hole; which pixels found one; and the shift that gave the most (0, 0 when none did)."""
    x0, y0, x1, y1 = box
    source = image.copy()
    todo = component.copy()
    height, width = holes.shape
    best, most = (0, 0), 0
    for dy, dx in _offsets(x1 - x0, y1 - y0):
        ys, xs = np.nonzero(todo)
        sy, sx = ys + dy, xs + dx
        ok = (sy >= 0) & (sy < height) & (sx >= 0) & (sx < width)
        ok[ok] = ~holes[sy[ok], sx[ok]]
        source[ys[ok], xs[ok]] = image[sy[ok], sx[ok]]
        todo[ys[ok], xs[ok]] = False
        if ok.sum() > most:
            best, most = (dy, dx), int(ok.sum())
        if not todo.any():
            break
    return source, component & ~todo, best


def _reflected_texture(image: np.ndarray, holes: np.ndarray, component: np.ndarray,
                       smooth: np.ndarray) -> np.ndarray:
    """``smooth`` (the smooth fill of every hole) plus the high frequencies of the border
    band reflected across the hole's edge (the pixel at distance d inside takes the detail at
    distance d outside)."""
    detail = image.astype(np.float32) - cv2.GaussianBlur(image, (0, 0), 3).astype(np.float32)
    _, labels = cv2.distanceTransformWithLabels(component.astype(np.uint8), cv2.DIST_L2, 5,
                                                labelType=cv2.DIST_LABEL_PIXEL)
    # labels index the zero (outside) pixels in scan order: map each to its coordinates.
    outside_y, outside_x = np.nonzero(~component)
    ys, xs = np.nonzero(component)
    nearest = labels[ys, xs] - 1
    by, bx = outside_y[nearest], outside_x[nearest]
    ry, rx = np.clip(2 * by - ys, 0, image.shape[0] - 1), np.clip(2 * bx - xs, 0, image.shape[1] - 1)
    clean = ~holes[ry, rx]
    out = smooth.astype(np.float32)
    out[ys[clean], xs[clean]] += detail[ry[clean], rx[clean]]
    return np.clip(out, 0, 255).round().astype(np.uint8)


def seamless_clone(guide: np.ndarray, target: np.ndarray, mask: np.ndarray, centre: tuple[int, int]) -> np.ndarray:
    """``cv2.seamlessClone(guide, target, mask, centre, cv2.NORMAL_CLONE)`` (HxWx3 uint8 images, HxW uint8
    mask): the same equations, solved by scipy's DST, within one level of OpenCV's blend.

    OpenCV solves them through complex DFTs one channel at a time: 1.7 s against 0.5 s here for the
    merged hole of the 1080p pair of people on this project's loaded 2-core CPU. OpenCV 5.1 also
    returns one of two blends from call to call (up to 35 levels apart on a test image); this one
    is the equations' solution. The equations: in the mask's bounding box (its 1-px image border
    cleared), placed at ``centre`` in ``target``, the guide's gradients where the mask eroded by 3 px
    is set and the target's elsewhere, the target's values on the box's edge; the solution truncated
    to uint8 as OpenCV does. Raises ValueError where OpenCV raises (a box leaving the target) or has
    nothing to solve."""
    mask = mask.copy()
    mask[[0, -1]] = 0
    mask[:, [0, -1]] = 0
    x, y, w, h = cv2.boundingRect(mask)
    left, top = centre[0] - w // 2, centre[1] - h // 2
    if w < 3 or h < 3 or left < 0 or top < 0 or left + w > target.shape[1] or top + h > target.shape[0]:
        raise ValueError(f"no blend region: {w}x{h} at ({left}, {top}) in {target.shape[1]}x{target.shape[0]}")
    region = mask[y:y + h, x:x + w]
    dest = target[top:top + h, left:left + w].astype(np.float32)
    patch = np.where(region[..., None] > 0, guide[y:y + h, x:x + w], 0).astype(np.float32)
    inner = cv2.erode(region, np.ones((3, 3), np.uint8), iterations=3, borderType=cv2.BORDER_CONSTANT,
                      borderValue=0)[..., None].astype(np.float32) / 255
    # Forward differences, each taken from the guide inside the eroded mask and the target outside it.
    gx = (dest[:, 1:] - dest[:, :-1]) * (1 - inner[:, :-1]) + (patch[:, 1:] - patch[:, :-1]) * inner[:, :-1]
    gy = (dest[1:] - dest[:-1]) * (1 - inner[:-1]) + (patch[1:] - patch[:-1]) * inner[:-1]
    edge = dest.copy()
    edge[1:-1, 1:-1] = 0
    # The divergence at the interior pixels, less the known edge values' share of the 5-point Laplacian.
    rhs = gx[1:-1, 1:] - gx[1:-1, :-1] + gy[1:, 1:-1] - gy[:-1, 1:-1]
    rhs -= edge[:-2, 1:-1] + edge[2:, 1:-1] + edge[1:-1, :-2] + edge[1:-1, 2:]
    # The type-I DST diagonalises the Dirichlet Laplacian: eigenvalues 2 cos(pi k / (n + 1)) - 2 per axis.
    eigen_x = 2 * np.cos(np.pi * np.arange(1, w - 1, dtype=np.float32) / (w - 1))
    eigen_y = 2 * np.cos(np.pi * np.arange(1, h - 1, dtype=np.float32) / (h - 1))
    spectrum = scipy.fft.dstn(rhs, type=1, axes=(0, 1)) / (eigen_x[None, :, None] + eigen_y[:, None, None] - 4)
    solution = scipy.fft.idstn(spectrum, type=1, axes=(0, 1))
    out = target.copy()
    out[top + 1:top + h - 1, left + 1:left + w - 1] = np.clip(solution, 0, 255).astype(np.uint8)
    return out


def _pad(image: np.ndarray) -> np.ndarray:
    # The blend needs the region's bounding box inside the image: work padded.
    return cv2.copyMakeBorder(image, PAD, PAD, PAD, PAD, cv2.BORDER_REFLECT)


def fill_scene(image: np.ndarray, holes: np.ndarray) -> np.ndarray:
    """``image`` (HxWx3 uint8) with every connected region of ``holes`` (HxW bool) filled from the
    scene around it. Pixels outside ``holes`` are returned unchanged.

    Every hole is given its copied pixels first, so the Poisson blending that follows (and the
    reflected padding it needs) never reads a pixel of any person."""
    if not holes.any():
        return image.copy()
    count, labels, stats, _ = cv2.connectedComponentsWithStats(holes.astype(np.uint8), connectivity=8)
    # Every hole inpainted at once from outside all holes, so no person is a known pixel: the base
    # of the reflected texture, and (below) the blend's destination inside the holes.
    smooth = failsafe.inpaint_fill(image, holes)
    base = image.copy()
    regions = []
    for label in range(1, count):
        x, y, w, h, _ = stats[label]
        component = labels == label
        source, found, shift = _patched(image, holes, component, (x, y, x + w, y + h))
        rest = component & ~found
        if rest.any():
            source[rest] = _reflected_texture(image, holes, rest, smooth)[rest]
        base[component] = source[component]
        regions.append((component, (x + w // 2, y + h // 2), shift))
    out = base.copy()
    padded = _pad(base)
    # The blend reads the destination inside its mask too, and a step there survives the blend:
    # the destination's holes hold the smooth inpaint, the guide the copies.
    for component, (cx, cy), (dy, dx) in regions:
        # The guide is the shifted scene itself, so gradients across the hole's edge are the
        # scene's own and the blend carries the border colours smoothly inwards.
        guide = np.roll(padded, (-dy, -dx), axis=(0, 1))
        guide[PAD:-PAD, PAD:-PAD][component] = base[component]
        # The blend region reaches 2 px past the hole, so the guide's gradients (not the
        # destination's) span the hole's edge; only the hole's pixels are taken from the result.
        ring = failsafe.dilated(component, 2).astype(np.uint8) * 255
        mask = cv2.copyMakeBorder(ring, PAD, PAD, PAD, PAD, cv2.BORDER_CONSTANT)
        try:
            target = out.copy()
            target[component] = smooth[component]
            cloned = seamless_clone(guide, _pad(target), mask, (PAD + cx, PAD + cy))
        except ValueError:  # degenerate shapes: the copied pixels, unblended
            continue
        out[component] = cloned[PAD:-PAD, PAD:-PAD][component]
    return out
