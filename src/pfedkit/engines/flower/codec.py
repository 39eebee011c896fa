"""Payloads to Flower records and back, losslessly, for every tensor dtype.

A payload (``dict[str, Tensor]``: weights, statistics, counters) becomes one ``ArrayRecord``
with one ``Array`` per key, in the payload's key order. Tensors whose dtype numpy can represent
(float16/32/64, every int and uint, bool, complex) travel in Flower's own ``numpy.ndarray``
format (``np.save`` bytes), so any Flower tool can read them; the others (bfloat16, float8)
travel as their raw bytes with the torch dtype name, stype ``pfedkit.torch-raw``. Decoding
gives CPU tensors equal to the originals bit for bit (values, dtype, shape; 0-d and empty
tensors too). Scalars (client metrics, evaluation counts) go into ``MetricRecord`` /
``ConfigRecord`` values as Python ints, floats and lists.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch
from flwr.app import Array, ArrayRecord
from flwr.supercore.inflatable.inflatable_object import InflatableObject, get_all_nested_objects
from flwr.supercore.inflatable.inflatable_utils import inflate_object_from_contents

from pfedkit.core.payload import Payload

T = TypeVar("T", bound=InflatableObject)

RAW_STYPE = "pfedkit.torch-raw"
"""``Array.stype`` of a tensor stored as raw bytes (dtypes numpy does not have)."""

_NUMPY_DTYPES = {
    torch.float16, torch.float32, torch.float64, torch.complex64, torch.complex128, torch.bool,
    torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64,
    *(getattr(torch, n) for n in ("uint16", "uint32", "uint64") if hasattr(torch, n)),
}
_RAW_DTYPES = {str(d).removeprefix("torch."): d for d in (
    torch.bfloat16, *(getattr(torch, n) for n in ("float8_e4m3fn", "float8_e5m2") if hasattr(torch, n)))}


def tensor_to_array(t: torch.Tensor) -> Array:
    """One tensor as a Flower ``Array`` (a detached, contiguous CPU copy of its bytes)."""
    t = t.detach().cpu().contiguous()
    if t.dtype in _NUMPY_DTYPES:
        return Array.from_numpy_ndarray(t.numpy())
    name = str(t.dtype).removeprefix("torch.")
    if name not in _RAW_DTYPES:
        raise TypeError(f"cannot encode a tensor of dtype {t.dtype}")
    raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
    return Array(dtype=name, shape=tuple(t.shape), stype=RAW_STYPE, data=raw)


def array_to_tensor(a: Array) -> torch.Tensor:
    """The tensor an ``Array`` holds (a CPU tensor that owns its memory)."""
    if a.stype == RAW_STYPE:
        dtype = _RAW_DTYPES.get(a.dtype)
        if dtype is None:
            raise TypeError(f"unknown raw dtype {a.dtype!r}")
        flat = torch.frombuffer(bytearray(a.data), dtype=torch.uint8) if a.data else torch.empty(0, dtype=torch.uint8)
        return flat.view(dtype).reshape(tuple(a.shape)).clone()
    arr = a.numpy()
    if not arr.flags.writeable or not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr).copy()
    return torch.from_numpy(arr)


def encode_payload(payload: Payload) -> ArrayRecord:
    """A payload as an ``ArrayRecord`` (key order kept; an empty payload gives an empty record)."""
    record = ArrayRecord()
    for key, t in payload.items():
        record[key] = tensor_to_array(t)
    return record


def decode_payload(record: ArrayRecord) -> Payload:
    """The payload an ``ArrayRecord`` made by `encode_payload` holds, as CPU tensors."""
    return {key: array_to_tensor(a) for key, a in record.items()}


def record_nbytes(record: ArrayRecord) -> int:
    """Bytes of the record's array data as it travels (``np.save`` headers included)."""
    return sum(len(a.data) for a in record.values())


def wire_nbytes(obj: InflatableObject) -> int:
    """Bytes of Flower's serialised form of a record, record dict or message: the sum of its
    distinct objects' contents (headers, array chunks, keys), without the transport's framing."""
    return sum(len(o.deflate()) for o in get_all_nested_objects(obj).values())


def wire_roundtrip(obj: T) -> T:
    """``obj`` serialised into Flower's object contents and inflated back, as a transport does."""
    contents = {oid: o.deflate() for oid, o in get_all_nested_objects(obj).items()}
    return inflate_object_from_contents(obj.object_id, contents)  # type: ignore[return-value]
