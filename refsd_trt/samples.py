"""Photos with people that ship inside installed packages (no download): the embedded demo inputs."""

from __future__ import annotations

import tempfile
from pathlib import Path

# People in the packaged photos, xyxy pixels, measured once by hand (the lite detector's boxes,
# without its false positives), keyed by the file's stem: the benchmark's known people and the
# avatar sheet's boxes, where no detector should decide what is tested.
SAMPLE_PEOPLE: dict[str, tuple[tuple[int, int, int, int], ...]] = {
    "bus": ((217, 394, 349, 889), (34, 385, 218, 910), (687, 346, 810, 881)),
    "zidane": ((170, 200, 720, 720), (745, 40, 1150, 720)),
    "astronaut": ((15, 15, 365, 512),),
}


def sample_image_paths() -> list[Path]:
    """ultralytics' bus.jpg and zidane.jpg when that package is installed, and scikit-image's
    astronaut (written once to a temporary PNG) when scikit-image is."""
    paths: list[Path] = []
    try:
        import importlib.util

        spec = importlib.util.find_spec("ultralytics")  # found without importing it (AGPL, heavy)
        if spec and spec.submodule_search_locations:
            assets = Path(next(iter(spec.submodule_search_locations))) / "assets"
            paths += sorted(p for p in assets.glob("*.jpg"))
    except (ImportError, ValueError):
        pass
    try:
        from PIL import Image
        from skimage import data

        target = Path(tempfile.gettempdir()) / "refsd-trt-samples" / "astronaut.png"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(".tmp.png")
            Image.fromarray(data.astronaut()).save(tmp)
            tmp.replace(target)
        paths.append(target)
    except ImportError:
        pass
    return paths
