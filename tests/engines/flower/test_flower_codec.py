"""Payloads survive Flower's records and wire objects bit for bit, whatever their dtype."""

from __future__ import annotations

import pytest
import torch

flwr = pytest.importorskip("flwr")

from flwr.app import ArrayRecord, RecordDict  # noqa: E402

from pfedkit.engines.flower.codec import (  # noqa: E402
    RAW_STYPE,
    decode_payload,
    encode_payload,
    record_nbytes,
    wire_nbytes,
    wire_roundtrip,
)

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.int8,
          torch.uint8, torch.bool, torch.complex64]


def sample(dtype: torch.dtype, shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64) * 1000
    if dtype == torch.bool:
        return x > 0
    if dtype.is_complex:
        return torch.complex(x, -x).to(dtype)
    return x.to(dtype)


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert list(a) == list(b)
    for key in a:
        assert b[key].dtype == a[key].dtype, key
        assert b[key].shape == a[key].shape, key
        assert b[key].device.type == "cpu"
        assert raw_bytes(a[key]) == raw_bytes(b[key]), key


def raw_bytes(t: torch.Tensor) -> bytes:
    """The tensor's bytes (bitwise comparison: NaN payloads and -0.0 count too)."""
    return t.clone().reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(), (0,), (7,), (3, 0, 2), (2, 3, 4)], ids=str)
def test_every_dtype_and_shape_roundtrips_through_the_wire(dtype: torch.dtype, shape: tuple[int, ...]) -> None:
    payload = {"w": sample(dtype, shape)}
    assert_same(payload, decode_payload(encode_payload(payload)))
    back = wire_roundtrip(RecordDict({"p": encode_payload(payload)}))
    assert_same(payload, decode_payload(back["p"]))


def test_empty_payload_order_noncontiguous_and_special_values() -> None:
    assert decode_payload(encode_payload({})) == {}
    assert decode_payload(wire_roundtrip(RecordDict({"p": encode_payload({})}))["p"]) == {}
    special = torch.tensor([float("nan"), float("inf"), -float("inf"), -0.0, 1e-45], dtype=torch.float32)
    payload = {
        "z.last": torch.arange(6, dtype=torch.int64).reshape(2, 3).t(),  # non-contiguous view
        "a.first": special,
        "gm.count": torch.tensor(5, dtype=torch.int64),
        "gm.mask": torch.tensor([True, False, True]),
        "gm.cov": sample(torch.float64, (4, 4)),
        "same.as.cov": sample(torch.float64, (4, 4)),  # identical content: one wire object, two keys
    }
    back = decode_payload(wire_roundtrip(RecordDict({"p": encode_payload(payload)}))["p"])
    assert_same(payload, back)
    back["gm.cov"].add_(1)  # decoded tensors own their memory
    assert not back["gm.cov"].equal(back["same.as.cov"])


def test_bfloat16_travels_raw_and_numpy_dtypes_in_flowers_format() -> None:
    record = encode_payload({"b": sample(torch.bfloat16, (3,)), "f": sample(torch.float32, (3,))})
    assert record["b"].stype == RAW_STYPE and record["b"].dtype == "bfloat16"
    assert record["f"].stype == "numpy.ndarray" and record["f"].dtype == "float32"
    assert isinstance(record, ArrayRecord)


def test_wire_bytes_cover_the_payload_bytes() -> None:
    payload = {"w": sample(torch.float32, (100, 10)), "n": torch.arange(10)}
    raw = sum(t.numel() * t.element_size() for t in payload.values())
    record = encode_payload(payload)
    assert raw < record_nbytes(record) < raw + 2 * 256  # np.save headers
    assert record_nbytes(record) < wire_nbytes(RecordDict({"p": record})) < raw + 4096
