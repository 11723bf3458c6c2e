"""The real presets on the real repositories' layout: a Hugging Face cache (refs, snapshots, blobs)
built from their real configuration files with random, narrowed weights (``real_layout_zoo``).

Each quirk of those folders that broke a real run has its own test; the CLI then runs both real
presets end to end on the cache, through the torch and the auto backends.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from refsd_trt.models import loaders, real_layout_zoo

SD15 = "stable-diffusion-v1-5/stable-diffusion-inpainting"
SDXL = "stabilityai/stable-diffusion-xl-base-1.0"
SDXL_INPAINT = "diffusers/stable-diffusion-xl-1.0-inpainting-0.1"
FP16_FIX_VAE = "madebyollin/sdxl-vae-fp16-fix"


@pytest.fixture(scope="session")
def real_zoo():
    return real_layout_zoo.build(shrink=True)


@pytest.fixture
def hub(real_zoo, monkeypatch):
    """Hugging Face ids resolve in the zoo's cache; the presets' ``.pt`` files in its weights folder."""
    for name, value in real_zoo.environ().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(real_zoo.hub))
    return real_zoo


def test_the_zoo_is_a_hub_cache_of_every_repository_the_real_presets_name(hub):
    assert set(real_layout_zoo.preset_repositories()) == {SD15, SDXL, SDXL_INPAINT, FP16_FIX_VAE}
    for repo in real_layout_zoo.preset_repositories():
        snapshot = loaders.resolve_model_dir(repo)
        assert snapshot == hub.snapshot(repo) and (snapshot / "model_index.json").is_symlink() != (repo == FP16_FIX_VAE)
        blobs = {p.resolve().parent for p in snapshot.rglob("*") if p.is_file()}
        assert blobs == {hub.hub / f"models--{repo.replace('/', '--')}" / "blobs"}
    # the quirks the real folders carry
    sd15 = loaders.resolve_model_dir(SD15)
    assert json.loads((sd15 / "config.json").read_text())["_class_name"] == "UNet2DConditionModel"
    assert "scaling_factor" not in json.loads((sd15 / "vae" / "config.json").read_text())
    assert json.loads((loaders.resolve_model_dir(SDXL) / "text_encoder_2" / "config.json").read_text())[
        "torch_dtype"] == "float16"
    unet = loaders.resolve_model_dir(SDXL) / "unet"
    assert sorted(p.name for p in unet.iterdir()) == ["config.json", "diffusion_pytorch_model.fp16.safetensors"]


def test_a_pipeline_with_a_stray_root_config_is_read_as_a_pipeline(hub):
    """Issue 18 item 1: the SD 1.5 inpainting repository's root config.json is a UNet's."""
    from refsd_trt.export.sources import component

    vae = loaders.load_vae(SD15)
    assert type(vae).__name__ == "AutoencoderKL" and vae.config.latent_channels == 4
    files = component("vae_decoder").files(loaders.resolve_model_dir(SD15))
    assert {p.parent.name for p in files} == {"vae"}


def test_the_vae_scale_follows_diffusers_defaults_and_the_vae_that_runs(hub):
    """Issue 18 item 2: no scaling_factor in SD 1.5's VAE config means diffusers' 0.18215; a separate
    VAE's own config gives the scale."""
    from refsd_trt.diffusion import load_components

    no_engine = lambda name: None  # the config values are what is checked here
    sd15 = load_components(loaders.resolve_model_dir(SD15), no_engine)
    assert sd15.scaling_factor == 0.18215 and sd15.native_size == 512 and sd15.unet_in_channels == 9
    with_fp16_fix = load_components(loaders.resolve_model_dir(SD15), no_engine, vae=loaders.resolve_model_dir(FP16_FIX_VAE))
    assert with_fp16_fix.scaling_factor == 0.13025
    sdxl = load_components(loaders.resolve_model_dir(SDXL_INPAINT), no_engine, vae=loaders.resolve_model_dir(FP16_FIX_VAE))
    assert sdxl.scaling_factor == 0.13025 and sdxl.native_size == 1024 and sdxl.sdxl


def test_text_encoders_load_in_fp32_whatever_their_config_says(hub):
    """Issue 18 item 4: transformers 5 loads by the config's torch_dtype (float16 in SDXL's)."""
    from refsd_trt.export.sources import load

    folder = loaders.resolve_model_dir(SDXL)
    loaded = load(folder, "text_encoder_2")
    stored = load_file(str(folder / "text_encoder_2" / "model.safetensors"))
    params = dict(loaded.model.named_parameters())
    assert {p.dtype for p in params.values()} == {torch.float32}
    weight = next(v for k, v in params.items() if k.endswith("text_projection.weight"))
    assert torch.equal(weight, stored["text_projection.weight"])  # bit-exact: not rounded through fp16
    assert stored["text_projection.weight"].half().float().ne(stored["text_projection.weight"]).any()


def test_a_cache_holding_only_the_fp16_variant_loads(hub):
    """Issue 18 item 7: a folder with only diffusion_pytorch_model.fp16.safetensors (variant= passed)."""
    folder = loaders.resolve_model_dir(SDXL) / "unet"
    unet = loaders.load_component(SDXL, "unet")
    stored = load_file(str(folder / "diffusion_pytorch_model.fp16.safetensors"))
    assert next(unet.parameters()).dtype == torch.float32
    assert torch.equal(unet.conv_in.weight, stored["conv_in.weight"].float())
    files = loaders.weight_files(folder)
    assert files.variant == "fp16" and [p.name for p in files.weights] == ["diffusion_pytorch_model.fp16.safetensors"]


def test_only_the_files_that_load_are_hashed(hub):
    """Issue 18 item 7: not the fp16 copies nor a repository's single-file checkpoints."""
    from refsd_trt.export.sources import component

    vae = component("vae_decoder").files(loaders.resolve_model_dir(FP16_FIX_VAE))
    assert sorted(p.name for p in vae) == ["config.json", "diffusion_pytorch_model.safetensors"]
    text = component("text_encoder").files(loaders.resolve_model_dir(SDXL))
    assert sorted(p.name for p in text) == ["config.json", "model.safetensors"]


def test_a_checkpoint_missing_weights_is_an_error(hub, tmp_path):
    """Issue 18 item 5: missing keys load as random layers unless refused."""
    folder = tmp_path / "vae"
    shutil.copytree(loaders.vae_folder(FP16_FIX_VAE), folder)
    weights = folder / "diffusion_pytorch_model.safetensors"
    state = load_file(str(weights))
    weights.unlink()
    save_file({k: v for k, v in state.items() if not k.startswith("decoder.conv_out")}, str(weights))
    with pytest.raises(loaders.IncompleteCheckpoint, match="lacks 2 weight"):
        loaders.load_vae(folder)


def test_diffusers_models_load_into_an_empty_model_or_not_at_all(hub, monkeypatch):
    """Issue 18 item 5: without accelerate diffusers falls back, with only a warning, to building the
    model and loading its weights beside it (twice its size in older diffusers releases than the 0.42.1
    measured here): loading needs it instead."""
    import weakref

    from diffusers.models import modeling_utils

    monkeypatch.setattr(modeling_utils, "is_accelerate_available", lambda: False)
    monkeypatch.setattr(loaders, "_LOADED", weakref.WeakValueDictionary())  # no earlier load to share
    with pytest.raises(ImportError, match="accelerate"):
        loaders.load_vae(FP16_FIX_VAE)


def test_a_cpu_torch_engine_keeps_fp16_only_weights_in_fp16_and_computes_in_fp32(hub):
    """Issue 18's memory plan: SDXL base's UNet is in the cache as its fp16 variant only. Cast to fp32 at
    load it takes 10.3 GB (16 GB while loading, beside the mapped file); kept as stored, 5.1 GB, with the
    same outputs: each layer computes with an exact fp32 copy of its weights."""
    from refsd_trt.engine.factory import load_engine
    from refsd_trt.engine.torch_backend import TorchEngine
    from refsd_trt.export import sources

    folder = loaders.resolve_model_dir(SDXL)
    engine = load_engine(folder, "unet", backend="torch", device="cpu")
    assert {p.dtype for p in engine.module.parameters()} == {torch.float16}
    cast = sources.load(folder, "unet")  # outside the torch engine: fp32, as exports need
    assert {p.dtype for p in cast.model.parameters()} == {torch.float32}
    from refsd_trt.export.validation import validation_axes

    inputs = engine.spec.example_inputs("float32", torch.device("cpu"), **validation_axes(engine.spec))
    kept, reference = engine.run(inputs), TorchEngine(cast.spec, cast.model).run(inputs)
    for name, value in reference.items():
        assert kept[name].dtype == torch.float32 and torch.equal(kept[name], value), name
    assert {p.dtype for p in engine.module.parameters()} == {torch.float16}  # restored after the call


def test_vae_encoder_and_decoder_share_one_loaded_vae(hub):
    """Issue 18 item 5: one load per model, not one per engine."""
    from refsd_trt.export.sources import load

    folder = loaders.resolve_model_dir(FP16_FIX_VAE)
    encoder, decoder = load(folder, "vae_encoder"), load(folder, "vae_decoder")
    shared = {id(p) for p in encoder.model.parameters()} & {id(p) for p in decoder.model.parameters()}
    assert len(shared) == len(list(decoder.model.parameters()))
    encoder.model.half()  # what a torch engine does in place for fp16: later loads get their own fp32 copy
    again = loaders.load_vae(folder)
    assert next(again.parameters()).dtype == torch.float32 and next(decoder.model.parameters()).dtype == torch.float16


def test_onnx_clean_up_and_check_follow_external_data(tmp_path, monkeypatch):
    """Issue 18 item 3: a model whose weights live beside it (past protobuf's 2 GB) is cleaned and
    checked without gathering its weights into one protobuf."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from refsd_trt.export import onnx_cleanup, onnx_files

    monkeypatch.setattr(onnx_files, "EXTERNAL_ABOVE", 1000)  # stands in for protobuf's 2 GB
    weight = numpy_helper.from_array(np.arange(4096, dtype=np.float32).reshape(64, 64), "w")
    nodes = [helper.make_node("Transpose", ["w"], ["wt"]), helper.make_node("MatMul", ["x", "wt"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])], [weight])
    path = tmp_path / "model.onnx"
    onnx_files.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    assert (tmp_path / "model.onnx.data").is_file()
    whole = []
    real_load = onnx.load_model
    monkeypatch.setattr(onnx, "load_model", lambda f, *a, load_external_data=True, **k: (
        whole.append(load_external_data), real_load(f, *a, load_external_data=load_external_data, **k))[1])
    facts = onnx_cleanup.clean(path)
    assert not any(whole), "clean-up loaded the external weights into one protobuf"
    assert facts["nodes_after"] <= facts["nodes_before"] and (tmp_path / "model.onnx.data").is_file()
    import onnxruntime as ort

    x = np.ones((1, 64), np.float32)
    y = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(y, x @ np.arange(4096, dtype=np.float32).reshape(64, 64).T)


def test_export_takes_a_hugging_face_id(hub, tmp_path, capsys):
    """Issue 18 item 7: `refsd-trt export <hub id>` as the presets name models."""
    from refsd_trt.cli import main

    assert main(["export", SDXL, "-c", "unet", "-f", "onnx", "--no-validate", "--out", str(tmp_path)]) == 0
    manifest = json.loads(next(tmp_path.glob("unet-onnx-*/manifest.json")).read_text())
    assert manifest["source"]["ref"] == str(loaders.resolve_model_dir(SDXL))
    assert [p.rsplit("/", 1)[-1] for p in manifest["source"]["files"]] == [
        "config.json", "diffusion_pytorch_model.fp16.safetensors"]


def test_doctor_checks_configurations_not_just_presence(hub, tmp_path, monkeypatch):
    from refsd_trt.presets import PRESETS, missing_requirements

    assert missing_requirements(PRESETS["refsd"]) == [] and missing_requirements(PRESETS["inpaint"]) == []
    # the refiner swapped for an inpainting checkpoint: present, but the wrong model for the role
    broken = tmp_path / "sdxl-inpaint-as-refiner"
    shutil.copytree(loaders.resolve_model_dir(SDXL_INPAINT), broken)
    (broken / "text_encoder_2" / "model.safetensors").unlink()
    (broken / "text_encoder_2" / "model.fp16.safetensors").unlink()
    monkeypatch.setitem(PRESETS["refsd"].models, "refiner", str(broken))  # type: ignore[index]
    reasons = missing_requirements(PRESETS["refsd"])
    assert any("refiner" in r and "in_channels 9" in r and "expects 4" in r for r in reasons), reasons
    assert any("refiner" in r and "text_encoder_2" in r and "no weights" in r for r in reasons), reasons


def _run_cli(tmp_path, preset: str, backend: str, *flags: str) -> dict:
    from refsd_trt.cli import main

    photo = tmp_path / "street.png"
    Image.fromarray((np.random.default_rng(0).random((240, 320, 3)) * 255).astype(np.uint8)).save(photo)
    out = tmp_path / f"out-{preset}-{backend}"
    code = main(["anonymize", str(photo), "-o", str(out), "--preset", preset, "--backend", backend,
                 "--device", "cpu", "-q", *flags])
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert code == 0 and len(records) == 1, records
    return records[0]


# Fewest steps each preset takes: refsd's removal and refinement one denoising step each (strength 0.6
# of 2 steps); inpaint's strength floor needs a start at signal-to-noise <= 1 (10 leading steps: t 501).
STEPS = {"refsd": 2, "inpaint": 10}


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "auto"])
@pytest.mark.parametrize("preset", ["refsd", "inpaint"])
def test_the_real_presets_run_end_to_end_on_the_real_layout(hub, tmp_path, preset, backend):
    config = tmp_path / "run.toml"
    config.write_text("removal_steps = 2\n")
    record = _run_cli(tmp_path, preset, backend, "--config", str(config), "--steps", str(STEPS[preset]),
                      "--batch-size", "1", "--crop-batch-size", "1")
    assert record["status"] == "ok" and record["people_count"] == 1
    # every stage ran: the only fill is the identity gate's (random models leave what looks like a face)
    assert [f for f in record["fallbacks"] if not f.startswith("filled (identity still matched")] == []
    engines = record["engines"]
    expected = ({"removal_unet", "removal_vae_decoder", "refine_unet", "refine_text_encoder_2", "pose"}
                if preset == "refsd" else {"inpaint_unet", "inpaint_vae_encoder", "inpaint_text_encoder_2"})
    assert {"detector"} | expected <= set(engines), engines


@pytest.mark.slow
def test_refsd_on_cpu_holds_one_diffusion_model_at_a_time(hub, tmp_path, monkeypatch):
    """Issue 18's memory plan: at full size the removal (4.3 GB) and refinement (13.9 GB) models do not
    fit a 24 GB machine together; on CPUs each loads only once the other's weights are freed."""
    import gc
    import weakref

    from refsd_trt.export import sources

    real_load, alive, loads = sources.load, [], []

    def load(ref, name):
        gc.collect()
        others = {r for r, w in alive if w() is not None and r != str(ref)}
        loads.append((str(ref), name, others))
        loaded = real_load(ref, name)
        alive.append((str(ref), weakref.ref(loaded.model)))
        return loaded

    monkeypatch.setattr(sources, "load", load)
    config = tmp_path / "run.toml"
    config.write_text("removal_steps = 2\n")
    record = _run_cli(tmp_path, "refsd", "torch", "--config", str(config), "--steps", "2", "--batch-size", "1",
                      "--crop-batch-size", "1")
    assert record["status"] == "ok" and record["people_count"] == 1
    removal, refiner = str(loaders.resolve_model_dir(SD15)), str(loaders.resolve_model_dir(SDXL))
    unets = [(ref, others) for ref, name, others in loads if name == "unet"]
    assert all(removal not in others and refiner not in others for _, others in unets), loads
    # built at start-up (refiner first, then removal), then the refiner again for the batch's refinement
    assert [ref for ref, _ in unets] == [refiner, removal, refiner], loads


def test_an_engine_that_cannot_be_built_stops_the_run_with_its_cause(hub, tmp_path, monkeypatch, capsys):
    """Issue 18 item 6: one error line saying why, not a traceback nor a wrapper's message alone."""
    import refsd_trt.engine
    from refsd_trt.cli import main

    def broken(*args, **kwargs):
        try:
            raise OSError(28, "No space left on device")
        except OSError as exc:
            raise RuntimeError("exporting unet to ONNX failed") from exc

    monkeypatch.setattr(refsd_trt.engine, "load_engine", broken)
    photo = tmp_path / "street.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(photo)
    assert main(["anonymize", str(photo), "-o", str(tmp_path / "out"), "--preset", "refsd", "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == ("error: RuntimeError: exporting unet to ONNX failed; caused by OSError: "
                       "[Errno 28] No space left on device")
