"""Suite-wide set-up: offline by construction, one shared tiny zoo, gpu tests skip with a reason."""

from __future__ import annotations

import os
import socket
import tempfile

import pytest

# Offline flags before anything imports huggingface_hub, transformers or ultralytics.
os.environ.update(
    HF_HUB_OFFLINE="1",
    TRANSFORMERS_OFFLINE="1",
    HF_DATASETS_OFFLINE="1",
    DIFFUSERS_OFFLINE="1",
    HF_HUB_DISABLE_TELEMETRY="1",
    YOLO_OFFLINE="1",
    YOLO_AUTOINSTALL="false",
    YOLO_VERBOSE="false",
    TQDM_DISABLE="1",
)
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="refsd-trt-yolo-"))


class NetworkAccessError(AssertionError):
    pass


def _is_local(address) -> bool:
    if isinstance(address, tuple) and address:
        host = str(address[0])
        return host in ("localhost", "::1") or host.startswith("127.")
    return isinstance(address, (str, bytes))  # AF_UNIX paths


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to reach beyond the loopback interface fails the test that made it."""
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def guard(real):
        def connect(sock, address):
            if not _is_local(address):
                raise NetworkAccessError(f"test tried to open a network connection to {address!r}")
            return real(sock, address)

        return connect

    def resolve(host, *args, **kwargs):
        raise NetworkAccessError(f"test tried to resolve {host!r}")

    monkeypatch.setattr(socket.socket, "connect", guard(real_connect))
    monkeypatch.setattr(socket.socket, "connect_ex", guard(real_connect_ex))
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *a, **k: (
        resolve(host) if host not in (None, "localhost", "127.0.0.1", "::1") else _real_getaddrinfo(host, *a, **k)))
    monkeypatch.setattr(socket, "gethostbyname", lambda host: resolve(host) if host != "localhost" else "127.0.0.1")
    yield


_real_getaddrinfo = socket.getaddrinfo


def _gpu_skip_reason() -> str | None:
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "needs an NVIDIA GPU: torch.cuda.is_available() is False on this machine"
    return None


def pytest_collection_modifyitems(config, items):
    reason = _gpu_skip_reason()
    if reason:
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def zoo():
    """Lazily built tiny zoo: ``zoo("sdxl")`` is the folder of that entry."""
    from refsd_trt.models import tiny_zoo

    return tiny_zoo.entry_path


@pytest.fixture(scope="session")
def sample_images():
    """Real photos with people that ship inside installed packages, as (name, HxWx3 uint8 RGB)."""
    import numpy as np
    from PIL import Image

    from refsd_trt.samples import sample_image_paths

    return [(p.stem, np.asarray(Image.open(p).convert("RGB"))) for p in sample_image_paths()]


@pytest.fixture(scope="session")
def eval_photos():
    """The packaged photos ``refsd-trt eval`` runs on, by name (bus, zidane, astronaut, grace_hopper,
    camera), as HxWx3 uint8 RGB; skips when none is installed."""
    import numpy as np
    from PIL import Image

    from refsd_trt.samples import EVAL_PHOTOS, sample_image_paths

    photos = {p.stem: np.asarray(Image.open(p).convert("RGB")) for p in sample_image_paths(EVAL_PHOTOS)}
    if not photos:
        pytest.skip("no packaged sample photo is installed")
    return photos


@pytest.fixture(scope="session")
def jpeg():
    """``jpeg(image, quality)``: an HxWx3 uint8 RGB image through a JPEG encode and decode."""
    import io

    import numpy as np
    from PIL import Image

    def round_trip(image, quality: int = 30):
        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="JPEG", quality=quality)
        return np.asarray(Image.open(buffer).convert("RGB"))

    return round_trip
