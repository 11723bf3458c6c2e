"""Whether a model folder can serve the role a preset gives it, read from its files without loading
weights: what ``doctor`` and the default-preset choice report beyond presence."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from refsd_trt.models.loaders import ModelNotFound, diffusers_config, pipeline_index, vae_folder, weight_files


@dataclass(frozen=True)
class RoleNeeds:
    unet_in_channels: int  # 9: inpainting (latents ‖ mask ‖ masked-image latents), 4: img2img
    text_encoders: tuple[str, ...]
    what: str


ROLES = {
    "removal": RoleNeeds(9, ("text_encoder",), "an SD inpainting pipeline"),
    "inpainter": RoleNeeds(9, ("text_encoder", "text_encoder_2"), "an SDXL inpainting pipeline"),
    "refiner": RoleNeeds(4, ("text_encoder", "text_encoder_2"), "an SDXL img2img pipeline"),
}
LATENT_CHANNELS = 4  # every UNet the presets run works on 4-channel latents


def _weights_problem(folder: Path, name: str) -> str | None:
    try:
        weight_files(folder)
    except ModelNotFound as exc:
        return f"{name}: {exc}"
    return None


def _tokenizer_problem(folder: Path, name: str) -> str | None:
    has_files = (folder / "tokenizer.json").is_file() or all((folder / f).is_file() for f in ("vocab.json", "merges.txt"))
    return None if has_files else f"{name}: {folder} has neither tokenizer.json nor vocab.json and merges.txt"


def vae_problems(folder: Path) -> list[str]:
    try:
        vae = vae_folder(folder)
    except ModelNotFound as exc:
        return [str(exc)]
    problems = [p for p in [_weights_problem(vae, "vae")] if p]
    if not problems and diffusers_config(vae)["latent_channels"] != LATENT_CHANNELS:
        problems.append(f"vae: {vae}: latent_channels {diffusers_config(vae)['latent_channels']}, "
                        f"the presets' UNets take {LATENT_CHANNELS}")
    return problems


def pipeline_problems(folder: Path, role: str) -> list[str]:
    """Everything that keeps ``folder`` from serving ``role`` (empty when it can)."""
    needs = ROLES[role]
    try:
        index = pipeline_index(folder)
    except ModelNotFound as exc:
        return [str(exc)]
    tokenizers = tuple(n.replace("text_encoder", "tokenizer") for n in needs.text_encoders)
    absent = [n for n in ("unet", "vae", "scheduler", *needs.text_encoders, *tokenizers) if n not in index]
    if absent:
        return [f"{folder}: model_index.json has no {', '.join(absent)}: not {needs.what}"]
    problems = [p for name in ("unet", "vae", *needs.text_encoders) if (p := _weights_problem(folder / name, name))]
    problems += [p for name in tokenizers if (p := _tokenizer_problem(folder / name, name))]
    if (folder / "unet" / "config.json").is_file():
        unet = diffusers_config(folder / "unet")
        if unet["in_channels"] != needs.unet_in_channels:
            problems.append(f"unet: in_channels {unet['in_channels']}, the {role} expects {needs.unet_in_channels} "
                            f"({needs.what})")
        hidden = [json.loads((folder / n / "config.json").read_text())["hidden_size"] for n in needs.text_encoders
                  if (folder / n / "config.json").is_file()]
        if len(hidden) == len(needs.text_encoders) and sum(hidden) != unet["cross_attention_dim"]:
            problems.append(f"unet: cross_attention_dim {unet['cross_attention_dim']}, but the text encoders give "
                            f"{' + '.join(map(str, hidden))}")
    return problems


def role_problems(folder: Path, role: str) -> list[str]:
    return vae_problems(folder) if role == "vae" else pipeline_problems(folder, role)
