"""Tiny, deterministic, random-initialised versions of every architecture the pipeline runs.

Each entry is written in the real checkpoint's on-disk format (a diffusers pipeline folder with
safetensors weights and JSON configs, CLIP tokenizer files, an ultralytics ``.pt``), so tests and
benchmarks go through the same loading code as real weights. Nothing is downloaded: configs live
here, tokenizers are built from a small word list, weights come from a fixed seed.

The zoo is built once into ``<cache>/zoo/<content key>``; the key hashes the configs and the
versions of the libraries that write the files, so a change to either builds a fresh zoo.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from refsd_trt.models.build_once import build_once
from refsd_trt.models.build_once import content_key as build_key
from refsd_trt.paths import cache_dir

ZOO_FORMAT = 1  # bump when the layout written here changes

TEXT_HIDDEN = 32  # both tiny CLIP text encoders
TEXT_PROJECTION = 32  # text_encoder_2's pooled embedding (SDXL "text_embeds")
TIME_EMBED = 8  # SDXL addition_time_embed_dim

# Words the tiny tokenizer knows as whole tokens; anything else falls back to single characters.
WORDS = (
    "a photo of person man woman boy girl child adult young old elderly teenager wearing shirt "
    "t-shirt jacket coat dress pants jeans shorts skirt red blue green black white gray brown "
    "yellow walking standing sitting running street city park background high quality realistic"
).split()


def unet_config(in_channels: int, sdxl: bool) -> dict:
    cfg = dict(
        sample_size=32,
        in_channels=in_channels,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=8,
        norm_num_groups=32,
        cross_attention_dim=2 * TEXT_HIDDEN if sdxl else TEXT_HIDDEN,
    )
    if sdxl:
        cfg.update(
            addition_embed_type="text_time",
            addition_time_embed_dim=TIME_EMBED,
            projection_class_embeddings_input_dim=TEXT_PROJECTION + 6 * TIME_EMBED,
            use_linear_projection=True,
            transformer_layers_per_block=(1, 1),
        )
    return cfg


def vae_config(scaling_factor: float, force_upcast: bool = True) -> dict:
    return dict(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(32, 32, 64, 64),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        norm_num_groups=32,
        sample_size=256,
        scaling_factor=scaling_factor,
        force_upcast=force_upcast,
    )


def text_config(vocab_size: int, bos: int, eos: int) -> dict:
    return dict(
        vocab_size=vocab_size,
        hidden_size=TEXT_HIDDEN,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        projection_dim=TEXT_PROJECTION,
        hidden_act="quick_gelu",
        bos_token_id=bos,
        eos_token_id=eos,
        pad_token_id=eos,
    )


SCHEDULER = dict(
    beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
    steps_offset=1, timestep_spacing="leading", prediction_type="epsilon",
)


# ---------------------------------------------------------------------------------------------
# Tokenizer files: CLIP's byte-level BPE, built the way CLIP builds its own vocabulary (every byte
# symbol, the same with the end-of-word marker, one token per merge, then the two specials).


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte-level alphabet: printable bytes map to themselves, the rest to code points
    from 256 up, so every byte has a visible, non-whitespace symbol."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            table[byte] = chr(byte)
        else:
            table[byte] = chr(256 + extra)
            extra += 1
    return table


def tokenizer_files() -> tuple[dict[str, int], list[str]]:
    symbols = list(_bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols]
    merges: list[str] = []
    for word in WORDS:
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        current = parts[0]
        for part in parts[1:]:
            merge = f"{current} {part}"
            current += part
            if merge not in merges:
                merges.append(merge)
                vocab.append(current)
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return {token: i for i, token in enumerate(vocab)}, merges


def write_tokenizer(folder: Path, pad_token: str) -> None:
    from transformers import CLIPTokenizer

    vocab, merges = tokenizer_files()
    tok = CLIPTokenizer(vocab=vocab, merges=[tuple(m.split(" ")) for m in merges], pad_token=pad_token,
                        model_max_length=77)
    tok.save_pretrained(folder)
    # The real repositories also carry the slow-tokenizer files; write them the same way.
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")


# ---------------------------------------------------------------------------------------------
# Builders: each writes one entry into an empty folder.


def _seeded(seed: int) -> None:
    import torch

    torch.manual_seed(seed)


def _text_encoders(with_second: bool):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    vocab, _ = tokenizer_files()
    cfg = text_config(len(vocab), vocab["<|startoftext|>"], vocab["<|endoftext|>"])
    first = CLIPTextModel(CLIPTextConfig(**cfg))
    second = CLIPTextModelWithProjection(CLIPTextConfig(**cfg)) if with_second else None
    return first, second


def _tokenizers(folder: Path, with_second: bool):
    from transformers import CLIPTokenizer

    write_tokenizer(folder / "tokenizer", pad_token="<|endoftext|>")
    if with_second:
        write_tokenizer(folder / "tokenizer_2", pad_token="!")  # SDXL's second tokenizer pads with "!"
    return CLIPTokenizer.from_pretrained(folder / "tokenizer"), (
        CLIPTokenizer.from_pretrained(folder / "tokenizer_2") if with_second else None
    )


def build_sd_inpaint(folder: Path) -> None:
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel

    _seeded(1)
    tok, _ = _tokenizers(folder, with_second=False)
    text, _ = _text_encoders(with_second=False)
    pipe = StableDiffusionInpaintPipeline(
        vae=AutoencoderKL(**vae_config(0.18215)),
        text_encoder=text,
        tokenizer=tok,
        unet=UNet2DConditionModel(**unet_config(9, sdxl=False)),
        scheduler=DDIMScheduler(**SCHEDULER, clip_sample=False, set_alpha_to_one=False),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder, safe_serialization=True)


def _build_sdxl(folder: Path, in_channels: int, pipeline_cls: str, seed: int) -> None:
    import diffusers
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel

    _seeded(seed)
    tok, tok2 = _tokenizers(folder, with_second=True)
    text, text2 = _text_encoders(with_second=True)
    pipe = getattr(diffusers, pipeline_cls)(
        vae=AutoencoderKL(**vae_config(0.13025)),
        text_encoder=text,
        text_encoder_2=text2,
        tokenizer=tok,
        tokenizer_2=tok2,
        unet=UNet2DConditionModel(**unet_config(in_channels, sdxl=True)),
        scheduler=EulerDiscreteScheduler(**SCHEDULER),
    )
    pipe.save_pretrained(folder, safe_serialization=True)


def build_sdxl(folder: Path) -> None:
    _build_sdxl(folder, 4, "StableDiffusionXLImg2ImgPipeline", seed=2)


def build_sdxl_inpaint(folder: Path) -> None:
    _build_sdxl(folder, 9, "StableDiffusionXLInpaintPipeline", seed=3)


def build_sdxl_vae_fp16_fix(folder: Path) -> None:
    """A standalone VAE repository, the layout of the fp16-safe SDXL VAE (config + weights at the root)."""
    from diffusers import AutoencoderKL

    _seeded(4)
    AutoencoderKL(**vae_config(0.13025, force_upcast=False)).save_pretrained(folder, safe_serialization=True)


def _build_yolo(folder: Path, yaml_name: str, seed: int) -> None:
    from refsd_trt.export.ultralytics_offline import yolo_class  # export-time only (AGPL)

    _seeded(seed)
    model = yolo_class()(yaml_name)
    model.save(folder / yaml_name.replace(".yaml", ".pt"))


def build_yolov8_seg(folder: Path) -> None:
    _build_yolo(folder, "yolov8n-seg.yaml", seed=5)


def build_yolov8_pose(folder: Path) -> None:
    _build_yolo(folder, "yolov8n-pose.yaml", seed=6)


@dataclass(frozen=True)
class ZooEntry:
    name: str
    build: Callable[[Path], None]
    config: dict  # what the content key hashes, besides library versions
    needs: tuple[str, ...] = ("diffusers", "transformers")

    @property
    def weights_file(self) -> str | None:
        """The checkpoint file inside the entry's folder, for single-file formats."""
        return {"yolov8-seg": "yolov8n-seg.pt", "yolov8-pose": "yolov8n-pose.pt"}.get(self.name)


ENTRIES: dict[str, ZooEntry] = {
    e.name: e
    for e in (
        ZooEntry("sd-inpaint", build_sd_inpaint, {"unet": unet_config(9, False), "vae": vae_config(0.18215)}),
        ZooEntry("sdxl", build_sdxl, {"unet": unet_config(4, True), "vae": vae_config(0.13025)}),
        ZooEntry("sdxl-inpaint", build_sdxl_inpaint, {"unet": unet_config(9, True), "vae": vae_config(0.13025)}),
        ZooEntry("sdxl-vae-fp16-fix", build_sdxl_vae_fp16_fix, {"vae": vae_config(0.13025, False)}, ("diffusers",)),
        ZooEntry("yolov8-seg", build_yolov8_seg, {"yaml": "yolov8n-seg.yaml"}, ("ultralytics",)),
        ZooEntry("yolov8-pose", build_yolov8_pose, {"yaml": "yolov8n-pose.yaml"}, ("ultralytics",)),
    )
}


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    for name in (dist, f"{dist}-opencv-headless"):
        try:
            return version(name)
        except PackageNotFoundError:
            continue
    return "absent"


def content_key(entry: ZooEntry) -> str:
    payload = {
        "format": ZOO_FORMAT,
        "entry": entry.name,
        "config": entry.config,
        "tokenizer": WORDS if "transformers" in entry.needs else None,
        "versions": {d: _version(d) for d in ("torch", *entry.needs)},
    }
    return build_key(payload)


def zoo_root() -> Path:
    return cache_dir() / "zoo"


def entry_path(name: str) -> Path:
    """The entry's folder, building it first if this content key was never built."""
    if name not in ENTRIES:
        raise KeyError(f"no tiny model {name!r}; the zoo has: {', '.join(ENTRIES)}")
    entry = ENTRIES[name]
    key = content_key(entry)
    return build_once(zoo_root() / f"{name}-{key}", entry.build, {"entry": name, "key": key})

def build_all(names: list[str] | None = None) -> dict[str, Path]:
    return {name: entry_path(name) for name in names or ENTRIES}
