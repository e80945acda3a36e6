"""MindSpore tensor type names and the NumPy dtypes that hold their bytes."""

from __future__ import annotations

import ml_dtypes
import numpy as np

# MindSpore's ``tensor_type`` string (as written into .ckpt files) -> little-endian NumPy dtype.
MS_TO_NUMPY: dict[str, np.dtype] = {
    "Bool": np.dtype(np.bool_),
    "Int8": np.dtype("<i1"),
    "Int16": np.dtype("<i2"),
    "Int32": np.dtype("<i4"),
    "Int64": np.dtype("<i8"),
    "UInt8": np.dtype("<u1"),
    "UInt16": np.dtype("<u2"),
    "UInt32": np.dtype("<u4"),
    "UInt64": np.dtype("<u8"),
    "Float16": np.dtype("<f2"),
    "Float32": np.dtype("<f4"),
    "Float64": np.dtype("<f8"),
    "BFloat16": np.dtype(ml_dtypes.bfloat16),
    "Complex64": np.dtype("<c8"),
    "Complex128": np.dtype("<c16"),
}

# safetensors header dtype -> MindSpore name (what the same tensor is called in a .ckpt file).
SAFETENSORS_TO_MS: dict[str, str] = {
    "BOOL": "Bool",
    "I8": "Int8",
    "I16": "Int16",
    "I32": "Int32",
    "I64": "Int64",
    "U8": "UInt8",
    "U16": "UInt16",
    "U32": "UInt32",
    "U64": "UInt64",
    "F16": "Float16",
    "F32": "Float32",
    "F64": "Float64",
    "BF16": "BFloat16",
    "C64": "Complex64",
}

STRING = "str"
FLOATING = frozenset({"Float16", "Float32", "Float64", "BFloat16"})
COMPLEX = frozenset({"Complex64", "Complex128"})


def numpy_dtype(ms_name: str) -> np.dtype | None:
    """The NumPy dtype for a MindSpore type name, or None when it has no fixed-size element (``str``)."""
    return MS_TO_NUMPY.get(ms_name)
