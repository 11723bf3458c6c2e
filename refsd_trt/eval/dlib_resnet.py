"""dlib's 128-D face descriptor network (``dlib_face_recognition_resnet_model_v1.dat``) in torch.

Same weights, same arithmetic as dlib's ``anet_type`` (dlib's examples/dnn_face_recognition_ex.cpp
and tools/python/src/face_recognition.cpp), so the descriptors agree with dlib's to float rounding
while torch runs the convolutions several times faster and without holding the GIL.

The file is dlib's own serialization of that network, read here without dlib:

* dlib serializes a network recursively, every ``add_layer`` writing its version and then its
  subnetwork before its own layer, so the file holds the loss layer, then one version number per layer
  from the top of the network down, then the input layer, then each layer's parameters from the
  bottom up. Tag and skip layers carry no data of their own, and the file cannot tell them apart,
  so the layer order is taken from ``anet_type`` and the file is checked against it.
* integers: a control byte (size in bytes in the low nibble, 0x80 for negative) and then the
  magnitude little-endian; floats: a mantissa and an exponent, each such an integer; bools: ASCII
  '0'/'1'; strings: a length and the bytes; tensors: version 2, (n, k, rows, cols) and then raw
  little-endian float32 in NCHW order.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

CHIP_SIZE = 150  # input_rgb_image_sized<150>
DESCRIPTOR_SIZE = 128


def _default_padding(kernel: int, stride: int) -> int:
    """dlib's default padding of con_, max_pool_ and avg_pool_: none when strided, else "same"
    (0 for avg_pool_everything, whose kernel is 0)."""
    return 0 if stride != 1 else kernel // 2


class DlibModelError(ValueError):
    """The file is not dlib's face recognition ResNet as this reader knows it."""


def _anet_layers() -> list[tuple]:
    """``anet_type`` from the input up: (kind, filters, kernel, stride) for con, (kind, kernel, stride)
    for pools. The ``block``, ``ares`` and ``ares_down`` templates are expanded as dlib's compiler does."""
    def block(n: int, stride: int) -> list[tuple]:  # BN<con<N,3,3,1,1,relu<BN<con<N,3,3,s,s,SUBNET>>>>>
        return [("con", n, 3, stride), ("affine",), ("relu",), ("con", n, 3, 1), ("affine",)]

    layers = [("con", 32, 7, 2), ("affine",), ("relu",), ("max_pool", 3, 2)]
    # alevel4 .. alevel0; each level's ares_down (if any) sits below its ares.
    for n, downs, plains in ((32, 0, 3), (64, 1, 3), (128, 1, 2), (256, 1, 2), (256, 1, 0)):
        for _ in range(downs):  # relu<add_prev2<avg_pool<2,2,2,2,skip1<tag2<block<N,2,tag1<SUBNET>>>>>>>
            layers += [("tag",), *block(n, 2), ("tag",), ("skip",), ("avg_pool", 2, 2), ("add_prev",), ("relu",)]
        for _ in range(plains):  # relu<add_prev1<block<N,1,tag1<SUBNET>>>>
            layers += [("tag",), *block(n, 1), ("add_prev",), ("relu",)]
    return layers + [("avg_pool", 0, 1), ("fc", DESCRIPTOR_SIZE)]  # avg_pool_everything, fc_no_bias<128>


class _Stream:
    """dlib's serialization primitives (dlib/serialize.h, dlib/float_details.h, dlib/cuda/tensor.h)."""

    def __init__(self, data: bytes, path: Path):
        self.data, self.pos, self.path = data, 0, path

    def fail(self, what: str) -> DlibModelError:
        return DlibModelError(f"{self.path} is not dlib's face recognition ResNet "
                              f"(dlib_face_recognition_resnet_model_v1.dat): {what} at byte {self.pos}")

    def take(self, n: int) -> bytes:
        if n < 0:
            raise self.fail(f"negative size {n}")
        if self.pos + n > len(self.data):
            raise self.fail(f"file ends early (needed {n} more bytes)")
        self.pos += n
        return self.data[self.pos - n:self.pos]

    def int(self) -> int:
        control = self.take(1)[0]
        size = control & 0x0F
        if size == 0 or size > 8:
            raise self.fail(f"bad integer control byte {control:#04x}")
        value = int.from_bytes(self.take(size), "little")
        return -value if control & 0x80 else value

    def float(self) -> float:
        mantissa, exponent = self.int(), self.int()
        # float_details' special exponents: inf, -inf, nan; no trained weight should be any of them
        special = {32000: math.inf, 32001: -math.inf, 32002: math.nan}
        return special[exponent] if exponent in special else math.ldexp(mantissa, exponent)

    def bool(self) -> bool:
        ch = self.take(1)
        if ch not in (b"0", b"1"):
            raise self.fail(f"bad bool {ch!r}")
        return ch == b"1"

    def str(self) -> str:
        size = self.int()
        if not 0 <= size <= 64:  # only layer names are read as strings
            raise self.fail(f"implausible string length {size}")
        return self.take(size).decode("latin-1")

    def tensor(self) -> np.ndarray:
        self.expect(self.int(), (2,), "tensor version")
        shape = tuple(self.int() for _ in range(4))
        return np.frombuffer(self.take(4 * math.prod(shape)), dtype="<f4").reshape(shape)

    def alias(self) -> tuple[int, ...]:
        """An alias_tensor: only a shape, a view into the layer's one params tensor."""
        self.expect(self.int(), (1,), "alias_tensor version")
        return tuple(self.int() for _ in range(4))

    def expect(self, got, allowed, what: str):
        if got not in allowed:
            raise self.fail(f"{what} is {got!r}, expected one of {list(allowed)}")
        return got


def _read_layer(s: _Stream, spec: tuple) -> tuple | None:
    """One layer's own data (dlib/dnn/layers.h); returns the parameters torch needs."""
    kind = spec[0]
    if kind == "con":
        _, filters, kernel, stride = spec
        version = s.expect(s.str(), ("con_4", "con_5", "con_6"), "con layer")
        params = s.tensor().reshape(-1)
        geometry = (s.int(), s.int(), s.int(), s.int(), s.int(), s.int(), s.int())
        pad = _default_padding(kernel, stride)
        s.expect(geometry, ((filters, kernel, kernel, stride, stride, pad, pad),), "con geometry")
        shape, _ = s.alias(), s.alias()  # filters, then biases (1, filters) right after them
        for _ in range(4):  # learning-rate and weight-decay multipliers
            s.float()
        use_bias = s.bool() if version != "con_4" else True
        if version == "con_6" and s.bool():
            raise s.fail("con layer with a fused relu")
        size = math.prod(shape)
        s.expect((shape[0], shape[2:], params.size), ((filters, (kernel, kernel), size + use_bias * filters),),
                 "con filters (count, size, parameters)")
        bias = params[size:] if use_bias else np.zeros(filters, np.float32)
        return params[:size].reshape(shape), bias
    if kind == "affine":
        version = s.expect(s.str(), ("affine_", "affine_2"), "affine layer")
        params = s.tensor().reshape(-1)
        gamma, beta = math.prod(s.alias()), math.prod(s.alias())
        s.expect((beta, params.size), ((gamma, 2 * gamma),), "affine sizes")
        s.expect(s.int(), (0,), "affine mode (CONV_MODE: one gamma/beta per channel)")
        if version == "affine_2" and s.bool():
            raise s.fail("disabled affine layer")
        return params[:gamma], params[gamma:gamma + beta]
    if kind == "relu":
        if s.expect(s.str(), ("relu_", "relu_2"), "relu layer") == "relu_2" and s.bool():
            raise s.fail("disabled relu layer")
        return None
    if kind in ("max_pool", "avg_pool"):
        _, kernel, stride = spec
        s.expect(s.str(), (f"{kind}_2",), f"{kind} layer")
        pad = _default_padding(kernel, stride)
        s.expect(tuple(s.int() for _ in range(6)), ((kernel, kernel, stride, stride, pad, pad),), f"{kind} geometry")
        return None
    if kind == "add_prev":
        s.expect(s.str(), ("add_prev_",), "add_prev layer")
        return None
    if kind == "fc":
        version = s.expect(s.str(), ("fc_2", "fc_3"), "fc layer")
        outputs, inputs = s.int(), s.int()
        params = s.tensor().reshape(-1)
        weights, _ = s.alias(), s.alias()
        s.expect(s.int(), (1,), "fc bias mode (FC_NO_BIAS)")
        for _ in range(4):
            s.float()
        if version == "fc_3":
            s.bool()
        s.expect((outputs, inputs, weights, params.size), ((spec[1], 256, (256, spec[1], 1, 1), 256 * spec[1]),),
                 "fc shape")
        return (params.reshape(inputs, outputs),)  # dlib computes x @ w
    raise AssertionError(kind)


def read_dlib_resnet(path: str | Path) -> dict:
    """The parameters of ``dlib_face_recognition_resnet_model_v1.dat``: input means, the (conv weight,
    conv bias, affine gamma, affine beta) of each of the 29 convolutions in order, and the fc weight."""
    path = Path(path)
    try:
        s = _Stream(path.read_bytes(), path)
    except OSError as error:
        raise DlibModelError(f"cannot read dlib's face recognition ResNet {path}: {error}") from None
    layers = _anet_layers()
    s.expect(s.int(), (1,), "loss layer version")
    if s.expect(s.str(), ("loss_metric_", "loss_metric_2"), "loss layer") == "loss_metric_2":
        s.float(), s.float()  # margin and distance threshold: training only
    # One version per layer, top down: add_layer 1-2 (2-3 for the one on the input), tag/skip 1.
    versions = []
    for i, spec in reversed(list(enumerate(layers))):
        allowed = (1,) if spec[0] in ("tag", "skip") else (2, 3) if i == 0 else (1, 2)
        versions.append(s.expect(s.int(), allowed, f"{spec[0]} version"))
    versions.reverse()
    s.expect(s.str(), ("input_rgb_image_sized",), "input layer")
    means = [s.float() for _ in range(3)]  # red, green, blue
    s.expect((s.int(), s.int()), ((CHIP_SIZE, CHIP_SIZE),), "input size")
    found = []
    for i, (spec, version) in enumerate(zip(layers, versions)):
        if spec[0] in ("tag", "skip"):
            continue
        found.append(_read_layer(s, spec))
        # add_layer's own state after the layer: three bools, x_grad, cached_output, and params_grad
        # (version 2) or, on the input, grad_final and (version 3) the sample expansion factor.
        for _ in range(3):
            s.bool()
        s.tensor(), s.tensor()
        if i == 0 or version == 2:
            s.tensor()
        if i == 0 and version == 3:
            s.int()
    if s.pos != len(s.data):
        raise s.fail(f"{len(s.data) - s.pos} bytes left after the network")
    # found holds one entry per layer other than tag/skip; every con is followed by its affine
    kinds = [spec[0] for spec in layers if spec[0] not in ("tag", "skip")]
    convs = [(*found[i], *found[i + 1]) for i, kind in enumerate(kinds) if kind == "con"]
    return {"means": means, "convs": convs, "fc": found[-1][0]}


class _Residual(nn.Module):
    """dlib's ares / ares_down with the affine layers folded into the convolutions."""

    def __init__(self, conv1: nn.Conv2d, conv2: nn.Conv2d, down: bool):
        super().__init__()
        self.conv1, self.conv2, self.down = conv1, conv2, down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(F.relu(self.conv1(x)))
        skip = F.avg_pool2d(x, 2, 2) if self.down else x
        if skip.shape != y.shape:
            # add_prev adds tensors of different shapes as if both were zero-padded at the end of every
            # dimension: the pooled skip has fewer channels, and at 8x8 -> 3x3 (conv) vs 4x4 (pool) more
            # rows and columns than the block's output.
            out = y.new_zeros(y.shape[0], max(y.shape[1], skip.shape[1]), max(y.shape[2], skip.shape[2]),
                              max(y.shape[3], skip.shape[3]))
            out[:, :y.shape[1], :y.shape[2], :y.shape[3]] = y
            out[:, :skip.shape[1], :skip.shape[2], :skip.shape[3]] += skip
            return F.relu(out)
        return F.relu(y + skip)


class DlibFaceResNet(nn.Module):
    """(N, 150, 150, 3) RGB uint8 face chips, aligned as ``dlib.get_face_chip`` does, to (N, 128) float32."""

    def __init__(self, params: dict):
        super().__init__()
        specs = [spec for spec in _anet_layers() if spec[0] == "con"]
        convs = []
        for (weight, bias, gamma, beta), (_, _, kernel, stride) in zip(params["convs"], specs, strict=True):
            conv = nn.Conv2d(weight.shape[1], weight.shape[0], kernel, stride, _default_padding(kernel, stride))
            # the affine after each con folds in: gamma * (w * x + b) + beta == (gamma * w) * x + (gamma * b + beta)
            conv.weight.data = torch.from_numpy(weight * gamma[:, None, None, None])
            conv.bias.data = torch.from_numpy(bias * gamma + beta)
            convs.append(conv)
        self.stem = convs[0]
        self.blocks = nn.ModuleList(_Residual(convs[i], convs[i + 1], specs[i][3] == 2)
                                    for i in range(1, len(convs), 2))
        self.fc = nn.Linear(256, DESCRIPTOR_SIZE, bias=False)
        self.fc.weight.data = torch.from_numpy(np.ascontiguousarray(params["fc"].T)).float()
        self.register_buffer("mean", torch.tensor(params["means"], dtype=torch.float32).view(1, 3, 1, 1))
        self.eval().requires_grad_(False)

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        if chips.dtype != torch.uint8 or chips.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3):
            raise ValueError(f"face chips must be (N, {CHIP_SIZE}, {CHIP_SIZE}, 3) uint8, "
                             f"not {tuple(chips.shape)} {chips.dtype}")
        x = (chips.permute(0, 3, 1, 2).float() - self.mean) / 256.0  # input_rgb_image_sized
        x = F.max_pool2d(F.relu(self.stem(x)), 3, 2)
        for block in self.blocks:
            x = block(x)
        return self.fc(x.mean(dim=(2, 3)))  # avg_pool_everything, fc_no_bias; loss_metric adds nothing


def load_dlib_resnet(path: str | Path) -> DlibFaceResNet:
    return DlibFaceResNet(read_dlib_resnet(path))
