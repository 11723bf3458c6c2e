"""Photos with people that ship inside installed packages (no download): the embedded demo inputs."""

from __future__ import annotations

import tempfile
from pathlib import Path

from refsd_trt.paths import package_file

# People in the packaged photos, xyxy pixels, measured once by hand (the lite detector's boxes,
# without its false positives), keyed by the file's stem: the benchmark's known people and the
# avatar sheet's boxes, where no detector should decide what is tested.
SAMPLE_PEOPLE: dict[str, tuple[tuple[int, int, int, int], ...]] = {
    "bus": ((217, 394, 349, 889), (34, 385, 218, 910), (687, 346, 810, 881)),
    "zidane": ((170, 200, 720, 720), (745, 40, 1150, 720)),
    "astronaut": ((15, 15, 365, 512),),
}


# Where each packaged photo lives: (import name of the package, path inside it, or a scikit-image
# ``data`` function written once to a temporary PNG).
_SOURCES: dict[str, tuple[str, str]] = {
    "bus": ("ultralytics", "assets/bus.jpg"),
    "zidane": ("ultralytics", "assets/zidane.jpg"),
    "astronaut": ("skimage", "astronaut"),
    "camera": ("skimage", "camera"),
    "grace_hopper": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
}
DEMO_PHOTOS = ("bus", "zidane", "astronaut")
EVAL_PHOTOS = ("bus", "zidane", "astronaut", "grace_hopper", "camera")


def _skimage_photo(name: str) -> Path | None:
    try:
        from PIL import Image
        from skimage import data
    except ImportError:
        return None
    target = Path(tempfile.gettempdir()) / "refsd-trt-samples" / f"{name}.png"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp.png")
        Image.fromarray(getattr(data, name)()).save(tmp)
        tmp.replace(target)
    return target


def sample_image_paths(names: tuple[str, ...] = DEMO_PHOTOS) -> list[Path]:
    """The packaged photos named (bus and zidane from ultralytics' assets, astronaut and camera from
    scikit-image, grace_hopper from matplotlib) whose package is installed, in the order named."""
    paths: list[Path] = []
    for name in names:
        package, where = _SOURCES[name]
        if package == "skimage":
            path = _skimage_photo(where)
        else:
            path = package_file(package, where)
        if path is not None and path.is_file():
            paths.append(path)
    return paths
