"""A Hugging Face cache of every repository the real presets name, laid out as the hub lays it out.

The tiny zoo's folders are cleaner than real ones; this zoo keeps what real folders hold. Each
repository is written from its real configuration files (``real_configs/``, copied from
../shared/real-configs with its quirks: a UNet ``config.json`` at the SD 1.5 inpainting root, a VAE
config without ``scaling_factor``, text-encoder configs saying ``torch_dtype: float16`` over fp32
weights, EMA keys in the SDXL inpainting UNet config) into ``hub/models--owner--name/{refs, blobs,
snapshots}`` with random weights in the real formats: fp32 safetensors plus an ``fp16`` variant copy,
except one folder that holds the ``fp16`` variant only (a cache fetched with ``--include
'*.fp16.*'``). The preset's ultralytics ``.pt`` files go to ``weights/``.

``shrink=True`` (tests) narrows layers and cuts depth but keeps every dimension that crosses a model
boundary (latent channels, UNet input channels, text hidden and projection sizes, SDXL's time-id
embedding, sample sizes, the number of resolution levels); only the vocabulary follows the small
offline tokenizer, because the real CLIP vocabulary is not available offline. ``shrink=False``
(``make check-real-layout``) writes every tensor at its real size.

Built once into ``<cache>/real-layout/<content key>``, like the tiny zoo.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from refsd_trt.models import tiny_zoo
from refsd_trt.models.build_once import build_once
from refsd_trt.models.build_once import content_key as build_key
from refsd_trt.paths import cache_dir

LAYOUT_FORMAT = 1  # bump when what is written here changes
CONFIGS = Path(__file__).with_name("real_configs")
# The folder of one repository whose weights are the fp16 variant only (repository, folder).
VARIANT_ONLY = ("stabilityai/stable-diffusion-xl-base-1.0", "unet")
# Single-file copies real repositories carry beside the diffusers files; nothing loads them.
EXTRA_COPIES = {"madebyollin/sdxl-vae-fp16-fix": ("sdxl_vae.safetensors",)}


def preset_repositories() -> tuple[str, ...]:
    """Every Hugging Face id the real presets name."""
    from refsd_trt.presets import PRESETS

    return tuple(sorted({ref for p in PRESETS.values() if not p.zoo for ref in p.models.values()
                         if not ref.endswith(".pt")}))


def preset_weight_files() -> tuple[str, ...]:
    from refsd_trt.presets import PRESETS

    return tuple(sorted({ref for p in PRESETS.values() if not p.zoo for ref in p.models.values() if ref.endswith(".pt")}))


def config_folder(repo_id: str) -> Path:
    return CONFIGS / repo_id.replace("/", "--")


# --- shrinking: widths and depths only, never a boundary dimension.

# Narrow enough that a CPU runs the VAE at SDXL's 1024² in about 2 s (widths 32..64 take 8 s): the
# native resolutions are what a real-layout run must exercise, so widths give way, with the group
# norms' group count (8, from 32) that they must divide.
NORM_GROUPS = 8


def _shrink_unet(cfg: dict) -> dict:
    levels = len(cfg["block_out_channels"])
    widths = [16 * min(2 ** i, 2) for i in range(levels)]
    heads = cfg["attention_head_dim"]
    out = {**cfg, "block_out_channels": widths, "layers_per_block": 1, "norm_num_groups": NORM_GROUPS,
           # SDXL lists heads per level (diffusers' historical name); keep 8-wide heads there
           "attention_head_dim": [w // 8 for w in widths] if isinstance(heads, list) else heads}
    if isinstance(cfg.get("transformer_layers_per_block"), list):
        out["transformer_layers_per_block"] = [1] * levels
    return out


def _shrink_vae(cfg: dict) -> dict:
    return {**cfg, "block_out_channels": [8, 8, 16, 16][:len(cfg["block_out_channels"])], "layers_per_block": 1,
            "norm_num_groups": NORM_GROUPS}


def _shrink_text(cfg: dict) -> dict:
    vocab, _ = tiny_zoo.tokenizer_files()
    return {**cfg, "num_hidden_layers": 1, "intermediate_size": 64, "vocab_size": len(vocab)}


def _vocab_only(cfg: dict) -> dict:
    """Full size still follows the offline tokenizer's vocabulary (ids past it are never produced)."""
    vocab, _ = tiny_zoo.tokenizer_files()
    return {**cfg, "vocab_size": max(cfg["vocab_size"], len(vocab))}


SHRINK: dict[str, Callable[[dict], dict]] = {
    "UNet2DConditionModel": _shrink_unet, "AutoencoderKL": _shrink_vae,
    "CLIPTextModel": _shrink_text, "CLIPTextModelWithProjection": _shrink_text,
}


def _class_of(cfg: dict) -> str:
    return cfg.get("_class_name") or cfg["architectures"][0]


def written_config(path: Path, shrink: bool) -> dict:
    """A config file as the zoo writes it: the real one, shrunk where ``shrink``."""
    cfg = json.loads(path.read_text())
    if path.name != "config.json" or "model_type" not in cfg and "_class_name" not in cfg:
        return cfg
    kind = _class_of(cfg)
    if kind not in SHRINK:
        return cfg
    return SHRINK[kind](cfg) if shrink else (_vocab_only(cfg) if "vocab_size" in cfg else cfg)


# --- weights: random, from the written config, in the library's own file names.

def _model_for(cfg: dict):
    import diffusers
    import transformers

    kind = _class_of(cfg)
    if "_class_name" in cfg:
        return getattr(diffusers, kind).from_config(cfg)
    config = transformers.CLIPTextConfig(**{k: v for k, v in cfg.items() if k != "torch_dtype"})
    return getattr(transformers, kind)(config)


def _weights_name(cfg: dict, variant: str | None) -> str:
    stem = "diffusion_pytorch_model" if "_class_name" in cfg else "model"
    return f"{stem}.{variant}.safetensors" if variant else f"{stem}.safetensors"


def _write_weights(folder: Path, cfg: dict, seed: int, fp32: bool, extra: tuple[str, ...] = ()) -> None:
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    model = _model_for(cfg).float()
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    del model
    if fp32:
        save_file(state, str(folder / _weights_name(cfg, None)), metadata={"format": "pt"})
    for name in extra:
        save_file(state, str(folder / name), metadata={"format": "pt"})
    save_file({k: v.half() for k, v in state.items()}, str(folder / _weights_name(cfg, "fp16")),
              metadata={"format": "pt"})


def _write_tokenizer(folder: Path) -> None:
    vocab, merges = tiny_zoo.tokenizer_files()
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")


def write_repository(repo_id: str, folder: Path, shrink: bool) -> None:
    """The repository's files (a snapshot) into ``folder``."""
    source = config_folder(repo_id)
    seed = int(hashlib.sha256(repo_id.encode()).hexdigest()[:8], 16)
    for path in sorted(source.rglob("*.json")):
        rel = path.relative_to(source)
        (folder / rel.parent).mkdir(parents=True, exist_ok=True)
        cfg = written_config(path, shrink)
        (folder / rel).write_text(json.dumps(cfg, indent=2) if cfg != json.loads(path.read_text())
                                  else path.read_text())
        if rel.name == "tokenizer_config.json":
            _write_tokenizer(folder / rel.parent)
        elif rel.name == "config.json" and _class_of(cfg) in SHRINK:
            is_pipeline_root = rel.parent == Path(".") and (source / "model_index.json").is_file()
            if is_pipeline_root:
                continue  # the stray UNet config at the SD 1.5 inpainting root: no weights beside it
            part = str(rel.parent) if rel.parent != Path(".") else ""
            fp32 = (repo_id, part) != VARIANT_ONLY
            _write_weights(folder / rel.parent, cfg, seed + len(part), fp32,
                           EXTRA_COPIES.get(repo_id, ()) if not part else ())


# --- the hub's cache layout: blobs named by content, a snapshot of links, refs/main.

def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _sha256(path: Path) -> str:
    from refsd_trt.io.hashing import sha256_file

    return sha256_file(path)


def cache_repository(hub: Path, repo_id: str, snapshot: Path) -> Path:
    """Move the files of ``snapshot`` into ``hub`` as the hub caches them; returns the snapshot folder."""
    repo = hub / f"models--{repo_id.replace('/', '--')}"
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in snapshot.rglob("*") if p.is_file())
    # LFS files are named by their sha256, the others by their git blob id.
    blob_ids = {p: _sha256(p) if p.suffix == ".safetensors" else _git_blob_sha1(p.read_bytes()) for p in files}
    commit = hashlib.sha1("".join(f"{p.relative_to(snapshot)}:{b}\n" for p, b in blob_ids.items()).encode()).hexdigest()
    target = repo / "snapshots" / commit
    for path, blob in blob_ids.items():
        rel = path.relative_to(snapshot)
        os.replace(path, repo / "blobs" / blob)
        link = target / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(Path(*[".."] * (len(rel.parts) + 1), "blobs", blob))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return target


# --- detectors: ultralytics checkpoints that find exactly one person, wherever it is.

def _one_person_head(model) -> None:
    """Set a YOLOv8 head so that, on any image, only the bottom-right anchor of the coarsest level
    scores as a person (0.99; every other anchor and class about 0): its class branch sees a constant
    feature, shifted down in one channel and right in another, which zero padding leaves at 0 only in
    the last row and last column. Boxes are DFL's uniform expectation: 15 strides square."""
    import torch

    head = model.model[-1]
    with torch.no_grad():
        for level, (box, cls) in enumerate(zip(head.cv2, head.cv3)):
            box[-1].weight.zero_()
            box[-1].bias.zero_()
            last = cls[-1]
            last.weight.zero_()
            last.bias.fill_(-12.0)
            if level < len(head.cv3) - 1:
                continue
            first, second = cls[0], cls[1]
            first.conv.weight.zero_()
            first.bn.weight.zero_()
            first.bn.bias.fill_(2.0)  # SiLU(2) = 1.76 everywhere
            first.bn.running_mean.zero_()
            first.bn.running_var.fill_(1.0)
            second.conv.weight.zero_()
            second.conv.weight[0, 0, 2, 1] = 1.0  # channel 0: the feature one row below
            second.conv.weight[1, 1, 1, 2] = 1.0  # channel 1: the feature one column right
            second.bn.weight.fill_(1.0)
            second.bn.bias.zero_()
            second.bn.running_mean.zero_()
            second.bn.running_var.fill_(1.0)
            last.weight[0, :2] = -10.0
            last.bias[0] = 5.0


def write_detector(path: Path, yaml_name: str, seed: int) -> None:
    import torch

    from refsd_trt.export.ultralytics_offline import yolo_class  # export-time only (AGPL)

    torch.manual_seed(seed)
    yolo = yolo_class()(yaml_name)
    _one_person_head(yolo.model)
    yolo.save(path)


# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RealLayoutZoo:
    root: Path

    @property
    def hub(self) -> Path:
        return self.root / "hub"

    @property
    def weights(self) -> Path:
        return self.root / "weights"

    def environ(self) -> dict[str, str]:
        """What points refsd-trt at this zoo: the hub cache and the ``.pt`` search folder."""
        return {"HF_HUB_CACHE": str(self.hub), "REFSD_TRT_WEIGHTS": str(self.weights)}

    def snapshot(self, repo_id: str) -> Path:
        repo = self.hub / f"models--{repo_id.replace('/', '--')}"
        return repo / "snapshots" / (repo / "refs" / "main").read_text().strip()


def content_key(shrink: bool) -> str:
    configs = {str(p.relative_to(CONFIGS)): p.read_text() for p in sorted(CONFIGS.rglob("*.json"))}
    payload = {"format": LAYOUT_FORMAT, "shrink": shrink, "configs": configs, "words": tiny_zoo.WORDS,
               "variant_only": VARIANT_ONLY, "extra": EXTRA_COPIES,
               "versions": {d: tiny_zoo._version(d) for d in ("torch", "diffusers", "transformers", "ultralytics")}}
    return build_key(payload)


# The presets' ultralytics checkpoints: the real architecture at full size, its nano scale shrunk.
DETECTOR_YAML = {"yolov8x-seg.pt": "yolov8{}-seg.yaml", "yolov8x-pose.pt": "yolov8{}-pose.yaml"}


def build(shrink: bool = True) -> RealLayoutZoo:
    """The zoo's folder, building it first if this content key was never built."""
    key = content_key(shrink)

    def fill(staging: Path) -> None:
        for repo_id in preset_repositories():
            snapshot = staging / "snapshot"
            write_repository(repo_id, snapshot, shrink)
            cache_repository(staging / "hub", repo_id, snapshot)
            shutil.rmtree(snapshot)
        (staging / "weights").mkdir()
        for i, name in enumerate(preset_weight_files()):
            write_detector(staging / "weights" / name, DETECTOR_YAML[name].format("n" if shrink else "x"), seed=11 + i)

    root = cache_dir() / "real-layout" / f"{'ci' if shrink else 'full'}-{key}"
    return RealLayoutZoo(build_once(root, fill, {"shrink": shrink, "key": key}))
