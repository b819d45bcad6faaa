"""Unit tests for pwfl.codec: quantization error bounds, payload layout, one test per past bug."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pwfl.codec import (
    MODES,
    QuantizedTensor,
    decode_update,
    dequantize,
    encode_update,
    payload_bytes,
    quantize,
)


def _bound(x: np.ndarray, scale: float) -> float:
    """Half a step, plus what the final cast to ``x.dtype`` may round away."""
    finfo = np.finfo(x.dtype)
    peak = float(np.max(np.abs(x.astype(np.float64)))) if x.size else 0.0
    return (
        scale / 2 * (1 + 1e-9) + float(finfo.eps) * (peak + scale) + float(finfo.smallest_subnormal)
    )


def _max_error(a: np.ndarray, b: np.ndarray) -> float:
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


@st.composite
def float_arrays(draw: st.DrawFn) -> np.ndarray:
    """float32/float64 arrays of 0 to 3 dimensions, values from 1e-36 to 1e12 in size."""
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=6))
    elements = st.floats(-1e6, 1e6, allow_nan=False, allow_subnormal=False)
    # fill= makes most of an array one repeated value, so constant arrays come up too.
    values = draw(hnp.arrays(np.float64, shape, elements=elements, fill=elements))
    magnitude = draw(st.sampled_from([1e-30, 1e-6, 1.0, 1e6]))
    return (values * magnitude).astype(dtype)


# ---------------------------------------------------------------- quantize / dequantize


@settings(max_examples=300, deadline=None)
@given(float_arrays())
def test_round_trip_error_is_at_most_half_a_step(x):
    q = quantize(x)
    y = dequantize(q)
    assert q.codes.dtype == np.uint8
    assert q.codes.shape == x.shape
    assert 0 <= q.zero_point <= 255
    assert q.scale > 0
    assert y.dtype == x.dtype
    assert y.shape == x.shape
    assert np.isfinite(y).all()
    assert _max_error(x, y) <= _bound(x, q.scale)


@settings(max_examples=100, deadline=None)
@given(float_arrays(), float_arrays())
def test_delta_round_trip_error_is_at_most_half_a_step(new, noise):
    reference = (new.astype(np.float64) - noise.flat[0]).astype(new.dtype)
    payload = encode_update({"w": new}, {"w": reference}, "int8-delta")
    out = decode_update(payload, {"w": reference}, "int8-delta")["w"]
    assert out.dtype == new.dtype
    assert out.shape == new.shape
    assert _max_error(new, out) <= _bound(new, float(payload["w::scale"]))


def test_float16_round_trip():
    x = np.linspace(-3, 5, 40).astype(np.float16)
    q = quantize(x)
    y = dequantize(q)
    assert y.dtype == np.float16
    assert _max_error(x, y) <= _bound(x, q.scale)


def test_quantize_rejects_integers_and_non_finite_values():
    with pytest.raises(ValueError, match="floating-point"):
        quantize(np.arange(3))
    with pytest.raises(ValueError, match="NaN or infinity"):
        quantize(np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="NaN or infinity"):
        encode_update({"w": np.array([np.inf])}, None, "int8")


# ---------------------------------------------------------------- one test per past bug


def test_codes_above_127_do_not_wrap():
    # Bug: codes 0..255 were stored as int8, so everything above 127 came back negative.
    x = np.linspace(0.0, 1.0, 256, dtype=np.float32)
    q = quantize(x)
    assert q.codes.dtype == np.uint8
    assert int(q.codes.max()) == 255
    assert int(q.codes.min()) == 0
    assert (q.codes > 127).sum() == 128
    y = dequantize(q)
    assert _max_error(x, y) <= _bound(x, q.scale)
    assert y[-1] == pytest.approx(1.0, abs=q.scale / 2)

    payload = encode_update({"w": x}, None, "int8")
    assert payload["w"].dtype == np.uint8
    out = decode_update(payload, None, "int8")["w"]
    assert _max_error(x, out) <= _bound(x, float(payload["w::scale"]))


@pytest.mark.parametrize(
    "x",
    [
        np.zeros((3, 3), dtype=np.float32),
        np.array(0.0, dtype=np.float32),
        np.array(5.0, dtype=np.float64),
        np.full(4, 0.1, dtype=np.float32),
        np.full((2, 2), -7.25, dtype=np.float64),
        np.full(3, 1e-30, dtype=np.float32),
        np.zeros(0, dtype=np.float32),
    ],
    ids=["zeros", "zero-scalar", "scalar", "constant", "negative", "tiny", "empty"],
)
def test_constant_tensor_round_trips_exactly(x):
    # Bug: max == min gave a zero scale, and the division turned the tensor into NaN.
    with np.errstate(all="raise"):
        q = quantize(x)
        y = dequantize(q)
    assert np.isfinite(q.scale) and q.scale > 0
    assert y.dtype == x.dtype
    assert y.shape == x.shape
    assert np.array_equal(y, x)


def test_batch_norm_counter_passes_through_every_mode():
    counter = np.array(1234, dtype=np.int64)
    for mode in MODES:
        with np.errstate(all="raise"):
            payload = encode_update({"bn.num_batches_tracked": counter}, {}, mode)
            out = decode_update(payload, {}, mode)["bn.num_batches_tracked"]
        assert out.dtype == np.int64
        assert out.shape == ()
        assert int(out) == 1234


def test_int8_delta_quantizes_the_update_not_the_weights():
    # Bug: int8-delta quantized the new weights, so a small update around large
    # weights drowned in steps of ~1000/255.
    rng = np.random.default_rng(0)
    reference = {"w": np.full(10_000, 1000.0, dtype=np.float32)}
    new = {"w": (reference["w"] + rng.normal(0.0, 1e-3, 10_000)).astype(np.float32)}

    delta = decode_update(encode_update(new, reference, "int8-delta"), reference, "int8-delta")
    plain = decode_update(encode_update(new, None, "int8"), None, "int8")

    delta_error = _max_error(new["w"], delta["w"])
    plain_error = _max_error(new["w"], plain["w"])
    assert delta["w"].dtype == np.float32
    assert delta_error < 1e-4
    assert plain_error > 10 * max(delta_error, 1e-5)
    # The delta's scale follows the update's range (~1e-2), not the weights' (~1e3).
    assert float(encode_update(new, reference, "int8-delta")["w::scale"]) < 1e-4


# ---------------------------------------------------------------- encode_update / decode_update


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "value",
    [
        np.arange(6, dtype=np.int64).reshape(2, 3),
        np.array([-1, 2**31 - 1], dtype=np.int32),
        np.array([0, 200, 255], dtype=np.uint8),
        np.array([True, False]),
    ],
    ids=["int64", "int32", "uint8", "bool"],
)
def test_non_float_arrays_pass_through_bit_identical(mode, value):
    arrays = {"w": np.ones(3, dtype=np.float32), "other": value}
    reference = {"w": np.zeros(3, dtype=np.float32), "other": np.zeros_like(value)}
    payload = encode_update(arrays, reference, mode)
    assert payload["other"].dtype == value.dtype
    assert payload["other"].tobytes() == value.tobytes()
    out = decode_update(payload, reference, mode)
    assert out["other"].dtype == value.dtype
    assert out["other"].shape == value.shape
    assert out["other"].tobytes() == value.tobytes()


def test_payload_layout_and_key_order():
    arrays = {
        "conv.weight": np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4),
        "bn.num_batches_tracked": np.array(3, dtype=np.int64),
        "fc.bias": np.array([0.5, -0.5], dtype=np.float64),
    }
    payload = encode_update(arrays, None, "int8")
    assert list(payload) == [
        "conv.weight",
        "conv.weight::scale",
        "conv.weight::zero",
        "conv.weight::dtype",
        "bn.num_batches_tracked",
        "fc.bias",
        "fc.bias::scale",
        "fc.bias::zero",
        "fc.bias::dtype",
    ]
    assert all(isinstance(v, np.ndarray) for v in payload.values())
    assert payload["conv.weight"].dtype == np.uint8
    assert payload["conv.weight::scale"].dtype == np.float64
    assert payload["conv.weight::scale"].shape == ()
    assert payload["conv.weight::dtype"].dtype == np.float32
    assert payload["conv.weight::dtype"].nbytes == 0
    assert payload["fc.bias::dtype"].dtype == np.float64
    out = decode_update(payload, None, "int8")
    assert list(out) == list(arrays)
    assert {k: v.dtype for k, v in out.items()} == {k: v.dtype for k, v in arrays.items()}


def test_payload_survives_a_flower_array_record():
    from flwr.app import Array, ArrayRecord

    rng = np.random.default_rng(1)
    reference = {"w": rng.standard_normal((4, 5)).astype(np.float32), "n": np.array(2)}
    new = {"w": reference["w"] + np.float32(0.01), "n": np.array(5)}
    payload = encode_update(new, reference, "int8-delta")
    record = ArrayRecord({name: Array(value) for name, value in payload.items()})
    unpacked = {name: array.numpy() for name, array in record.items()}
    direct = decode_update(payload, reference, "int8-delta")
    packed = decode_update(unpacked, reference, "int8-delta")
    assert list(packed) == ["w", "n"]
    for name in direct:
        assert packed[name].dtype == direct[name].dtype
        assert np.array_equal(packed[name], direct[name])


def test_int8_payload_is_a_quarter_of_float32():
    arrays = {"w": np.random.default_rng(2).standard_normal(10_000).astype(np.float32)}
    raw = payload_bytes(arrays)
    assert raw == 40_000
    assert payload_bytes(encode_update(arrays, None, "int8")) <= 0.3 * raw
    assert payload_bytes(encode_update(arrays, arrays, "int8-delta")) <= 0.3 * raw


def test_mode_none_is_identity():
    arrays = {"w": np.array([0.1, 0.2], dtype=np.float32), "n": np.array(3, dtype=np.int64)}
    payload = encode_update(arrays, None, "none")
    assert list(payload) == list(arrays)
    assert all(payload[k] is arrays[k] for k in arrays)
    out = decode_update(payload, None, "none")
    assert all(out[k] is arrays[k] for k in arrays)


def test_unknown_mode_raises_naming_it():
    with pytest.raises(ValueError, match="unknown codec mode 'fp4'") as info:
        encode_update({"w": np.zeros(2)}, None, "fp4")
    assert "int8-delta" in str(info.value)
    with pytest.raises(ValueError, match="unknown codec mode 'int4'"):
        decode_update({"w": np.zeros(2)}, None, "int4")


def test_delta_mode_needs_a_matching_reference():
    arrays = {"w": np.zeros(3, dtype=np.float32)}
    with pytest.raises(ValueError, match="needs the reference"):
        encode_update(arrays, None, "int8-delta")
    with pytest.raises(ValueError, match="no array 'w'"):
        encode_update(arrays, {}, "int8-delta")
    with pytest.raises(ValueError, match="shape"):
        encode_update(arrays, {"w": np.zeros(4, dtype=np.float32)}, "int8-delta")
    payload = encode_update(arrays, arrays, "int8-delta")
    with pytest.raises(ValueError, match="needs the reference"):
        decode_update(payload, None, "int8-delta")


def test_reserved_separator_and_incomplete_payload_raise():
    with pytest.raises(ValueError, match="reserves"):
        encode_update({"w::scale": np.zeros(2)}, None, "int8")
    payload = encode_update({"w": np.arange(3.0)}, None, "int8")
    del payload["w::zero"]
    with pytest.raises(ValueError, match="lacks 'w::zero'"):
        decode_update(payload, None, "int8")


def test_quantized_tensor_fields():
    q = quantize(np.array([-1.0, 0.0, 3.0], dtype=np.float32))
    assert isinstance(q, QuantizedTensor)
    assert q.dtype == np.float32
    # The range [-1, 3] spans 255 steps of 4/255, and 0.0 sits on code round(255/4) = 64.
    assert q.scale == pytest.approx(4 / 255)
    assert q.zero_point == 64
    assert list(q.codes) == [0, 64, 255]
