"""Element types as each runtime names them, keyed by torch dtype (the engine interface's currency)."""

from __future__ import annotations

import numpy as np
import torch

# numpy scalar types are what onnxruntime's IOBinding takes as ``element_type``; only the type
# object is used, never a numpy array, so no data passes through numpy.
NUMPY = {
    torch.float32: np.float32,
    torch.float16: np.float16,
    torch.int64: np.int64,
    torch.int32: np.int32,
    torch.bool: np.bool_,
    torch.uint8: np.uint8,
}

# onnxruntime's type strings ("tensor(float16)") -> torch dtypes.
ORT = {
    "tensor(float)": torch.float32,
    "tensor(float16)": torch.float16,
    "tensor(int64)": torch.int64,
    "tensor(int32)": torch.int32,
    "tensor(bool)": torch.bool,
    "tensor(uint8)": torch.uint8,
}


def float_precision(dtypes) -> str:
    """The engine precision implied by a model's tensor dtypes: float16 if any float tensor is."""
    return "float16" if torch.float16 in set(dtypes) else "float32"
