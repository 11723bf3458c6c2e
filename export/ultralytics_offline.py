"""Import ultralytics (AGPL-3.0, export time only) with every network and auto-install path off."""

from __future__ import annotations

import os
import tempfile


def yolo_class():
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    os.environ.setdefault("YOLO_VERBOSE", "false")
    if "YOLO_CONFIG_DIR" not in os.environ:
        os.environ["YOLO_CONFIG_DIR"] = tempfile.mkdtemp(prefix="refsd-trt-yolo-")
    try:
        from ultralytics import YOLO
    except ImportError as exc:
        raise ImportError(
            "this step needs ultralytics (AGPL-3.0, export time only): pip install 'refsd-trt[export]'"
        ) from exc
    return YOLO
