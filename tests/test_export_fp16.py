"""What the fp16 export keeps fp32 (export/fp16.py), read back from the converted ONNX graph on CPU:
the timestep and SDXL time_ids inputs and their sinusoidal embeddings, and every normalization."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import torch
from diffusers.models.embeddings import Timesteps
from torch import nn

from refsd_trt.export import fp16
from refsd_trt.export.formats import export
from refsd_trt.export.specs import unet_spec


class _TimeEmbedding(nn.Module):
    """diffusers' timestep path: sinusoids (flip_sin_to_cos, as SD and SDXL UNets) then the first layer."""

    def __init__(self):
        super().__init__()
        self.proj = Timesteps(64, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.linear = nn.Linear(64, 16)

    def forward(self, timestep):
        sinusoid = self.proj(timestep)
        return sinusoid, self.linear(sinusoid.to(self.linear.weight.dtype))


def _time_embedding_onnx(tmp_path):
    torch.manual_seed(0)
    model = _TimeEmbedding().eval()
    path = tmp_path / "time.onnx"
    torch.onnx.export(model, (torch.tensor([999.0, 3.0]),), str(path), input_names=["timestep"],
                      output_names=["sinusoid", "emb"],
                      dynamic_axes={"timestep": {0: "batch"}, "sinusoid": {0: "batch"}, "emb": {0: "batch"}},
                      opset_version=17, dynamo=False)
    return model, onnx.load(str(path))


def _run(model: onnx.ModelProto, t: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    want = session.get_inputs()[0].type
    feed = t.astype(np.float32 if want == "tensor(float)" else np.float16)
    return [x.astype(np.float32) for x in session.run(None, {"timestep": feed})]


def test_the_sinusoid_of_a_late_timestep_stays_fp32(tmp_path):
    torch_model, graph = _time_embedding_onnx(tmp_path)
    t = np.array([999.0, 977.25, 3.5], dtype=np.float32)  # Euler's timesteps are fractional
    with torch.no_grad():
        want = [x.numpy() for x in torch_model(torch.from_numpy(t))]
    # What the plain converter does (the defect): timestep and sin/cos in fp16.
    from onnxruntime.transformers.float16 import convert_float_to_float16

    plain = convert_float_to_float16(onnx.load_from_string(graph.SerializeToString()), keep_io_types=False)
    assert np.abs(_run(plain, t)[0] - want[0]).max() > 0.1  # sin/cos values in [-1, 1]
    converted, kept = fp16.convert_model(graph)
    onnx.checker.check_model(converted)
    assert kept["fp32_inputs"] == ["timestep"] and kept["fp32_input_nodes"] >= 4
    report = fp16.fp32_report(converted)
    assert report["timestep"] == ["float32"] and report["Sin"] == report["Cos"] == ["float32"]
    sinusoid, emb = _run(converted, t)
    assert np.abs(sinusoid - want[0]).max() < 1e-3  # fp32 values, rounded once to the fp16 output
    # Only the embedding layer's fp16 weights and activations remain.
    assert np.abs(emb - want[1]).max() < 5e-3 * max(1.0, np.abs(want[1]).max())
    assert any(n.op_type == "Gemm" for n in converted.graph.node)
    weights = {i.name: i.data_type for i in converted.graph.initializer}
    assert onnx.TensorProto.FLOAT16 in weights.values()  # the layer itself is fp16


def test_no_fp16_round_trip_inside_the_fp32_chain(tmp_path):
    _, graph = _time_embedding_onnx(tmp_path)
    converted, kept = fp16.convert_model(graph)
    assert kept["round_trips_removed"] >= 1
    producer = {o: n for n in converted.graph.node for o in n.output}
    sin = next(n for n in converted.graph.node if n.op_type == "Sin")
    # Walk back from the sin to the graph input: no Cast to fp16 on the way.
    name, to_fp16 = sin.input[0], []
    while name in producer:
        node = producer[name]
        if node.op_type == "Cast":
            to_fp16 += [a.i == onnx.TensorProto.FLOAT16 for a in node.attribute if a.name == "to"]
        name = node.input[0]
    assert name == "timestep" and not any(to_fp16)


def test_sdxl_unet_fp16_export_keeps_time_and_norms_fp32(zoo, tmp_path):
    artifact = export(zoo("sdxl"), "unet", "onnx-fp16", root=tmp_path)
    report = fp16.fp32_report(onnx.load(str(artifact.main_file)))
    assert report["timestep"] == report["time_ids"] == ["float32"]
    assert len(report["Sin"]) == len(report["Cos"]) == 2  # the timestep's and the time_ids' projections
    for op in ("Sin", "Cos", "InstanceNormalization", "LayerNormalization"):
        assert report[op] and set(report[op]) == {"float32"}, (op, report[op])
    conversion = artifact.manifest["conversion"]
    assert conversion["fp32_inputs"] == ["timestep", "time_ids"] and conversion["rules"] == fp16.RULES_VERSION
    inputs = {t["name"]: t["dtype"] for t in artifact.manifest["inputs"]}
    assert inputs == {"sample": "float16", "timestep": "float32", "encoder_hidden_states": "float16",
                      "text_embeds": "float16", "time_ids": "float32"}
    assert artifact.manifest["validation"]["max_abs_diff"]["out_sample"] <= artifact.manifest["validation"]["limit"]["out_sample"]


def test_vae_fp16_export_keeps_group_norms_fp32(zoo, tmp_path):
    artifact = export(zoo("sd-inpaint"), "vae_decoder", "onnx-fp16", root=tmp_path)
    report = fp16.fp32_report(onnx.load(str(artifact.main_file)))
    assert report["InstanceNormalization"] and set(report["InstanceNormalization"]) == {"float32"}


def test_sdxl_refiner_spec_takes_five_time_ids_and_1280_text_embeds():
    refiner = {"in_channels": 4, "out_channels": 4, "cross_attention_dim": 1280, "addition_embed_type": "text_time",
               "projection_class_embeddings_input_dim": 2560, "addition_time_embed_dim": 256,
               "requires_aesthetics_score": True}
    shapes = {t.name: t.shape for t in unet_spec(refiner).inputs}
    assert shapes["time_ids"] == ("batch", 5) and shapes["text_embeds"] == ("batch", 1280)
    base = {**refiner, "cross_attention_dim": 2048, "projection_class_embeddings_input_dim": 2816,
            "requires_aesthetics_score": False}
    shapes = {t.name: t.shape for t in unet_spec(base).inputs}
    assert shapes["time_ids"] == ("batch", 6) and shapes["text_embeds"] == ("batch", 1280)
    dtypes = {t.name: t.torch_dtype("float16") for t in unet_spec(base).inputs}
    assert dtypes["timestep"] == dtypes["time_ids"] == torch.float32 and dtypes["sample"] == torch.float16


def test_a_refiner_pipeline_flag_reaches_the_unet_spec(zoo, tmp_path):
    """model_index.json, not the UNet's config, says a pipeline is a refiner (5 time_ids)."""
    import json
    import shutil

    from refsd_trt.export import sources

    folder = tmp_path / "refiner"
    shutil.copytree(zoo("sdxl"), folder, symlinks=True)
    index = json.loads((folder / "model_index.json").read_text())
    assert sources.load(folder, "unet").config["requires_aesthetics_score"] is False
    (folder / "model_index.json").write_text(json.dumps({**index, "requires_aesthetics_score": True}))
    loaded = sources.load(folder, "unet")
    assert {t.name: t.shape for t in loaded.spec.inputs}["time_ids"] == ("batch", 5)
