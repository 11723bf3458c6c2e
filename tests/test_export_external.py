"""Models past protobuf's 2 GB through the export path without gathering their weights (issue 14):
the exporter's one-file-per-weight output re-saved, and the fp16 conversion, streamed one tensor at
a time. A tiny model stands in, pushed onto the external-data path by a lowered threshold."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from refsd_trt.export import fp16, onnx_files
from refsd_trt.export.formats import export


@pytest.fixture
def whole_loads(monkeypatch):
    """Every ``onnx.load_model`` call's ``load_external_data`` flag, in order."""
    seen: list[bool] = []
    real = onnx.load_model

    def load_model(f, *args, load_external_data=True, **kwargs):
        seen.append(load_external_data)
        return real(f, *args, load_external_data=load_external_data, **kwargs)

    monkeypatch.setattr(onnx, "load_model", load_model)
    return seen


def _run(path, feeds):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def _weights(path) -> dict[str, np.ndarray]:
    model = onnx.load_model(str(path), load_external_data=True)
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def test_resave_gathers_one_file_per_weight_into_one_weights_file(tmp_path, whole_loads):
    rng = np.random.default_rng(0)
    w1, w2 = (rng.standard_normal((64, 64)).astype(np.float32) for _ in range(2))
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("MatMul", ["h", "w2"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 64])],
                              [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    raw = tmp_path / "raw" / "raw.onnx"
    raw.parent.mkdir()
    # As the TorchScript exporter writes a model past 2 GB: a file per weight, named after it.
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(raw),
                    save_as_external_data=True, all_tensors_to_one_file=False, size_threshold=0)
    assert sorted(p.name for p in raw.parent.iterdir()) == ["raw.onnx", "w1", "w2"]
    whole_loads.clear()
    out = tmp_path / "model.onnx"
    onnx_files.resave(raw, out)
    assert not any(whole_loads), "resave gathered the weights into one protobuf"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.onnx.data", "raw"]
    assert (tmp_path / "model.onnx.data").stat().st_size == w1.nbytes + w2.nbytes
    for p in raw.parent.iterdir():
        p.unlink()  # nothing still points at the exporter's files
    x = rng.standard_normal((3, 64)).astype(np.float32)
    np.testing.assert_allclose(_run(out, {"x": x})[0], x @ w1 @ w2, rtol=1e-5, atol=1e-4)


def test_a_weight_outside_the_model_folder_is_refused(tmp_path):
    tensor = numpy_helper.from_array(np.ones(4, np.float32), "w")
    onnx.external_data_helper.set_external_data(tensor, "../elsewhere.bin", 0, 16)
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    with pytest.raises(ValueError, match=r"tensor 'w' points outside its model's folder \(\.\./elsewhere\.bin\)"):
        onnx_files.read_external(tensor, tmp_path)


def test_external_fp16_conversion_equals_the_in_memory_one(zoo, tmp_path, monkeypatch, whole_loads):
    """The SDXL-style tiny UNet converted twice: from one protobuf, and with its weights in a file
    beside it (streamed): the same graph, the same fp16 and fp32 weights bit for bit, the same
    outputs, and the time sinusoids and norms still fp32."""
    fp32 = export(zoo("sdxl"), "unet", "onnx", root=tmp_path / "artifacts")
    inline = tmp_path / "inline" / "model.onnx"
    inline.parent.mkdir()
    facts_inline = fp16.convert(fp32.main_file, inline)

    monkeypatch.setattr(onnx_files, "EXTERNAL_ABOVE", 1000)  # stands in for protobuf's 2 GB
    external_src = tmp_path / "external-fp32" / "model.onnx"
    external_src.parent.mkdir()
    onnx_files.save(onnx_files.load(fp32.main_file), external_src)
    external = tmp_path / "external" / "model.onnx"
    external.parent.mkdir()
    whole_loads.clear()
    facts = fp16.convert(external_src, external)
    assert not any(whole_loads), "the fp16 conversion gathered the external weights into one protobuf"
    assert facts["external_weights"] > 10 and facts_inline["external_weights"] == 0
    assert {k: v for k, v in facts.items() if k != "external_weights"} == \
        {k: v for k, v in facts_inline.items() if k != "external_weights"}
    assert (external.parent / "model.onnx.data").is_file() and not (inline.parent / "model.onnx.data").exists()

    a, b = onnx_files.load_graph(inline), onnx_files.load_graph(external)
    assert [(n.op_type, list(n.input), list(n.output)) for n in a.graph.node] == \
        [(n.op_type, list(n.input), list(n.output)) for n in b.graph.node]
    want, got = _weights(inline), _weights(external)
    assert want.keys() == got.keys()
    types = {t.name: t.data_type for t in a.graph.initializer}
    assert TensorProto.FLOAT16 in types.values() and TensorProto.FLOAT in types.values()
    for name in want:
        assert want[name].dtype == got[name].dtype and np.array_equal(want[name], got[name]), name

    report = fp16.fp32_report(b)
    for op in ("Sin", "Cos", "InstanceNormalization", "LayerNormalization"):
        assert report[op] and set(report[op]) == {"float32"}, (op, report[op])
    rng = np.random.default_rng(1)
    session = ort.InferenceSession(str(inline), providers=["CPUExecutionProvider"])
    feeds = {}
    for value in session.get_inputs():
        shape = [d if isinstance(d, int) else {"batch": 2}.get(d, 32) for d in value.shape]
        if value.name == "encoder_hidden_states":
            shape[1] = 77
        dtype = np.float32 if value.type == "tensor(float)" else np.float16
        feeds[value.name] = (rng.random(shape) * (999 if value.name == "timestep" else 1)).astype(dtype)
    for x, y in zip(_run(inline, feeds), _run(external, feeds)):
        assert np.array_equal(x, y)
