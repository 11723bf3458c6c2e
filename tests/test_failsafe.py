import numpy as np

from refsd_trt import failsafe


def _scene():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    masks = np.zeros((2, 64, 80), dtype=bool)
    masks[0, 10:30, 10:20] = True
    masks[1, 30:60, 50:70] = True
    return image, masks


def test_unreplaced_person_is_filled_and_reported():
    image, masks = _scene()
    output = image.copy()
    output[masks[0]] = 0  # person 0 replaced, person 1 left as is
    safe, bad = failsafe.enforce(image, output, masks, radius=2)
    assert bad == [1]
    assert failsafe.unchanged_fraction(image, safe, masks[1]) < 0.05
    assert np.array_equal(safe[masks[0]], output[masks[0]])  # the good replacement is kept
    far = np.zeros_like(masks[0])
    far[:5, 40:] = True
    assert np.array_equal(safe[far], image[far])  # nothing outside the people changes


def test_missing_or_malformed_output_fills_everyone():
    image, masks = _scene()
    for output in (None, image[:10], image.astype(np.float32)):
        safe, bad = failsafe.enforce(image, output, masks, radius=2)
        assert bad == [0, 1]
        assert all(failsafe.unchanged_fraction(image, safe, m) < 0.05 for m in masks)


def test_dilation_grows_the_mask_by_the_radius():
    mask = np.zeros((21, 21), dtype=bool)
    mask[10, 10] = True
    grown = failsafe.dilated(mask, 3)
    assert grown[10, 7] and grown[10, 13] and grown[7, 10] and not grown[10, 6] and not grown[6, 6]


def test_solid_fill_when_inpainting_fails(monkeypatch):
    image, masks = _scene()

    def broken(*args, **kwargs):
        raise failsafe.cv2.error("injected")

    monkeypatch.setattr(failsafe.cv2, "resize", broken)
    safe = failsafe.fill_people(image, masks[:1], radius=0)
    assert np.all(safe[masks[0]] == failsafe.SOLID)


def test_people_known_to_have_failed_are_filled_even_if_changed():
    image, masks = _scene()
    output = image.copy()
    output[masks.any(0)] = 7  # both changed, but the caller saw person 0's stage produce NaN
    safe, bad = failsafe.enforce(image, output, masks, radius=0, failed=(0,))
    assert bad == [0]
    assert not np.all(safe[masks[0]] == 7) and np.all(safe[masks[1]] == 7)


def test_inpaint_fill_reads_no_masked_pixel_and_blends_the_surroundings():
    # Left half red, right half blue; the hole straddles the edge and holds green "person" pixels.
    image = np.zeros((60, 90, 3), dtype=np.uint8)
    image[:, :45, 0], image[:, 45:, 2] = 200, 200
    mask = np.zeros((60, 90), dtype=bool)
    mask[15:45, 25:65] = True
    person = image.copy()
    person[mask] = (0, 255, 0)
    filled = failsafe.inpaint_fill(person, mask)
    assert np.array_equal(filled[~mask], image[~mask])  # outside the hole: untouched
    assert np.array_equal(filled, failsafe.inpaint_fill(image, mask))  # the hole's content is never read
    assert filled[mask][:, 1].max() == 0  # no green anywhere
    row = filled[30, 25:65].astype(int)
    assert row[0, 0] > 150 and row[0, 2] < 50 and row[-1, 2] > 150 and row[-1, 0] < 50  # each side's colour
    assert np.all(np.diff(row[:, 0]) <= 0) and np.all(np.diff(row[:, 2]) >= 0)  # and a smooth passage between


def test_inpaint_fill_of_the_whole_image_is_solid():
    image = np.full((8, 8, 3), 9, dtype=np.uint8)
    assert np.all(failsafe.inpaint_fill(image, np.ones((8, 8), dtype=bool)) == failsafe.SOLID)
