"""Photos with people that ship inside installed packages (no download): the embedded demo inputs."""

from __future__ import annotations

import tempfile
from pathlib import Path


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
