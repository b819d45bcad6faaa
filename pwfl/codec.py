"""8-bit compression of client updates: per-tensor affine quantization of weights or deltas.

A codec turns a name -> ndarray dict into a *payload*, another flat name -> ndarray
dict that packs into a Flower ``ArrayRecord`` unchanged, and back::

    payload = encode_update(new_weights, reference=global_weights, mode="int8-delta")
    payload_bytes(payload)                       # ~1/4 of the float32 weights
    weights = decode_update(payload, reference=global_weights, mode="int8-delta")

Modes:

* ``none``: the payload is the arrays themselves.
* ``int8``: every floating-point tensor is quantized to 8 bits.
* ``int8-delta``: the *update* ``arrays - reference`` is quantized, and decoding
  adds the reference back. The update spans a far smaller range than the
  weights, so the same 256 levels resolve it much more finely.

Arrays that are not floating point (batch norm's int64 ``num_batches_tracked``)
pass through untouched in every mode.

Payload naming: a quantized tensor ``w`` becomes four entries, written in this
order where ``w`` stood, so the decoded dict keeps the original key order:

* ``w``: the codes, ``uint8`` in [0, 255], with ``w``'s shape;
* ``w::scale``: the step between codes, a 0-d ``float64``;
* ``w::zero``: the code that stands for 0.0, a 0-d ``int32``;
* ``w::dtype``: an empty array whose dtype is ``w``'s original dtype (0 bytes).

``w::scale`` marks ``w`` as quantized; a name without it is passed through.
``::`` is therefore reserved: ``encode_update`` rejects names that contain it
(PyTorch's state-dict names use dots only). No Flower import here: the client
and the server both use this module, and it is plain NumPy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pwfl import registry

Arrays = dict[str, np.ndarray]

MODES = registry.COMPRESSION_MODES
"""Compression modes by name (``comm.compression``), described above."""
SEP = "::"
LEVELS = 255  # uint8 codes 0..255: 255 steps between the lowest and the highest code


@dataclass(frozen=True)
class QuantizedTensor:
    """A float tensor as 8-bit codes: ``value ~= (codes - zero_point) * scale``."""

    codes: np.ndarray
    """``uint8`` codes in [0, 255], with the tensor's shape."""
    scale: float
    """Step between two codes; the round-trip error is at most ``scale / 2``."""
    zero_point: int
    """The code that stands for 0.0, in [0, 255]."""
    dtype: np.dtype
    """The tensor's original floating-point dtype, restored by ``dequantize``."""


def quantize(x: np.ndarray) -> QuantizedTensor:
    """Quantize a float tensor to ``uint8`` codes with a per-tensor scale and zero point.

    Jacob et al., "Quantization and Training of Neural Networks for Efficient
    Integer-Arithmetic-Only Inference", CVPR 2018, Section 2.1: ``r = S (q - Z)``
    with an integer zero point ``Z``, so the range is widened to include 0.0.

    Parameters
    ----------
    x
        A floating-point array of any shape, 0-d included; every value finite.

    Returns
    -------
    QuantizedTensor
        Codes, scale and zero point, such that ``dequantize`` is within
        ``scale / 2`` of ``x`` everywhere (plus the rounding of the final cast
        to ``x.dtype``). A constant tensor (all-zero, a 0-d scalar) comes back
        exactly.

    Raises
    ------
    ValueError
        If ``x`` is not floating point or holds NaN or infinity.
    """
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"quantize expects a floating-point array, got {x.dtype}")
    return _quantize(x.astype(np.float64), x.dtype)


def dequantize(q: QuantizedTensor) -> np.ndarray:
    """The float tensor behind ``q``, in its original dtype and shape.

    Parameters
    ----------
    q
        The output of ``quantize``.

    Returns
    -------
    np.ndarray
        ``(codes - zero_point) * scale`` cast to ``q.dtype``.
    """
    return _dequantize64(q).astype(q.dtype)


def encode_update(arrays: Arrays, reference: Arrays | None, mode: str) -> Arrays:
    """Compress the arrays a client sends into a flat payload of ndarrays.

    Konečný et al., "Federated Learning: Strategies for Improving Communication
    Efficiency", arXiv:1610.05492, Section 3 (sketched updates): the client
    compresses its update to the global model, not the model itself.

    Parameters
    ----------
    arrays
        The client's weights, name -> ndarray.
    reference
        The weights the client started from (the global weights it received);
        required by ``int8-delta``, ignored otherwise.
    mode
        ``none``, ``int8`` or ``int8-delta`` (see the module docstring).

    Returns
    -------
    dict[str, np.ndarray]
        The payload, named as the module docstring describes.

    Raises
    ------
    ValueError
        For an unknown mode, a name containing ``::``, non-finite values, or an
        ``int8-delta`` reference that lacks a tensor or has another shape.
    """
    _check_mode(mode)
    if mode == "none":
        return dict(arrays)
    payload: Arrays = {}
    for name, value in arrays.items():
        if SEP in name:
            raise ValueError(f"array name '{name}' contains '{SEP}', which the codec reserves")
        value = np.asarray(value)
        if not np.issubdtype(value.dtype, np.floating):
            payload[name] = value
            continue
        values64 = value.astype(np.float64)
        if mode == "int8-delta":
            values64 = values64 - _reference_for(name, value, reference).astype(np.float64)
        q = _quantize(values64, value.dtype)
        payload[name] = q.codes
        payload[name + SEP + "scale"] = np.asarray(q.scale, dtype=np.float64)
        payload[name + SEP + "zero"] = np.asarray(q.zero_point, dtype=np.int32)
        payload[name + SEP + "dtype"] = np.empty(0, dtype=q.dtype)
    return payload


def decode_update(payload: Arrays, reference: Arrays | None, mode: str) -> Arrays:
    """Rebuild the client's arrays from a payload made by ``encode_update``.

    Parameters
    ----------
    payload
        The flat dict ``encode_update`` returned (after any ArrayRecord round trip).
    reference
        The same reference the client encoded against; required by ``int8-delta``.
    mode
        The mode the payload was encoded with.

    Returns
    -------
    dict[str, np.ndarray]
        The arrays in their original order, dtypes and shapes.

    Raises
    ------
    ValueError
        For an unknown mode, a quantized tensor missing its side entries, or an
        ``int8-delta`` reference that lacks a tensor or has another shape.
    """
    _check_mode(mode)
    if mode == "none":
        return dict(payload)
    arrays: Arrays = {}
    for name, value in payload.items():
        if SEP in name:
            continue
        if name + SEP + "scale" not in payload:
            arrays[name] = value
            continue
        q = QuantizedTensor(
            codes=np.asarray(value),
            scale=float(_side(payload, name, "scale")),
            zero_point=int(_side(payload, name, "zero")),
            dtype=_side(payload, name, "dtype").dtype,
        )
        values64 = _dequantize64(q)
        if mode == "int8-delta":
            ref = _reference_for(name, values64, reference)
            values64 = ref.astype(np.float64) + values64
        arrays[name] = values64.astype(q.dtype)
    return arrays


def payload_bytes(payload: Arrays) -> int:
    """Bytes of array data in a payload (its side entries included)."""
    return int(sum(np.asarray(value).nbytes for value in payload.values()))


def _quantize(values: np.ndarray, dtype: np.dtype) -> QuantizedTensor:
    """Quantize float64 ``values``; ``dtype`` is what ``dequantize`` will restore."""
    if values.size == 0:
        return QuantizedTensor(np.zeros(values.shape, np.uint8), 1.0, 0, np.dtype(dtype))
    if not np.isfinite(values).all():
        raise ValueError("cannot quantize an array that holds NaN or infinity")
    lo, hi = float(values.min()), float(values.max())
    if lo == hi:
        # A constant (a zero tensor, a 0-d scalar) has no range to divide into
        # steps; code 1 (or 0) times |c| gives the constant back exactly.
        if lo == 0.0:
            return QuantizedTensor(np.zeros(values.shape, np.uint8), 1.0, 0, np.dtype(dtype))
        code, zero = (1, 0) if lo > 0 else (0, 1)
        codes = np.full(values.shape, code, np.uint8)
        return QuantizedTensor(codes, abs(lo), zero, np.dtype(dtype))
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    # Divide before subtracting: hi - lo overflows for float64 values near 1e308.
    scale = hi / LEVELS - lo / LEVELS
    # Round the scale up until 255 steps cover [lo, hi], so the clipping at the
    # ends never costs more than half a step; tiny keeps it from underflowing.
    scale = max(scale, float(np.finfo(np.float64).tiny))
    while hi / scale - lo / scale > LEVELS:
        scale = float(np.nextafter(scale, np.inf))
    zero = int(np.clip(np.rint(-lo / scale), 0, LEVELS))
    codes = np.clip(np.rint(values / scale) + zero, 0, LEVELS).astype(np.uint8)
    return QuantizedTensor(codes, scale, zero, np.dtype(dtype))


def _dequantize64(q: QuantizedTensor) -> np.ndarray:
    # Widen before subtracting: uint8 codes minus the zero point would wrap.
    return (q.codes.astype(np.float64) - q.zero_point) * q.scale


def _reference_for(name: str, value: np.ndarray, reference: Arrays | None) -> np.ndarray:
    if reference is None:
        raise ValueError("mode 'int8-delta' needs the reference weights")
    if name not in reference:
        raise ValueError(f"the reference has no array '{name}'")
    ref = np.asarray(reference[name])
    if ref.shape != value.shape:
        raise ValueError(f"'{name}' has shape {value.shape} but its reference {ref.shape}")
    return ref


def _side(payload: Arrays, name: str, field: str) -> np.ndarray:
    key = name + SEP + field
    if key not in payload:
        raise ValueError(f"payload marks '{name}' as quantized but lacks '{key}'")
    return np.asarray(payload[key])


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown codec mode '{mode}'; choose one of {', '.join(MODES)}")
