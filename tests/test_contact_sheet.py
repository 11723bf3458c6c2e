import numpy as np
from PIL import Image

from refsd_trt.contact_sheet import LABEL_HEIGHT, save_contact_sheet


def test_sheet_places_cells_at_the_requested_height(tmp_path):
    red = np.zeros((50, 100, 3), np.uint8)
    red[..., 0] = 255
    blue = np.zeros((100, 50, 3), np.uint8)
    blue[..., 2] = 255
    path = save_contact_sheet([[("before", red), ("after", blue)]], tmp_path / "s.png", height=40)
    sheet = np.asarray(Image.open(path))
    assert sheet.shape == (6 + 40 + LABEL_HEIGHT + 6, 6 + 80 + 6 + 20 + 6, 3)
    assert tuple(sheet[6 + LABEL_HEIGHT + 20, 6 + 40]) == (255, 0, 0)
    assert tuple(sheet[6 + LABEL_HEIGHT + 20, 6 + 80 + 6 + 10]) == (0, 0, 255)
    assert not list(tmp_path.glob(".*tmp"))
