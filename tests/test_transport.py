"""pwfl.transport's own .npy reading and writing give Flower's Array exactly."""

from __future__ import annotations

import numpy as np
import torch
from flwr.app import Array, ArrayRecord
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pwfl.transport import array_values, to_array, to_numpy, to_record, to_torch, torch_record

DTYPES = st.sampled_from(
    [np.float32, np.float64, np.float16, np.int8, np.int64, np.uint8, np.bool_, ">f4"]
)


@st.composite
def arrays(draw: st.DrawFn) -> np.ndarray:
    """Arrays of 0 to 3 dimensions, some of them Fortran-ordered or strided views."""
    value = draw(hnp.arrays(draw(DTYPES), hnp.array_shapes(min_dims=0, max_dims=3, min_side=0)))
    layout = draw(st.sampled_from(["c", "fortran", "strided"]))
    if layout == "fortran":
        value = np.asfortranarray(value)
    elif layout == "strided" and value.ndim:
        value = value[::2]
    return value


@settings(max_examples=300, deadline=None)
@given(arrays())
def test_the_bytes_and_values_are_flowers_own(value):
    # Twice: the first call writes through np.save, the second reuses the header.
    for _ in range(2):
        ours, flowers = to_array(value), Array(value)
        assert ours.data == flowers.data
        assert (ours.dtype, ours.shape, ours.stype) == (flowers.dtype, flowers.shape, flowers.stype)
        for array in (ours, flowers):
            read, expected = array_values(array), flowers.numpy()
            assert read.dtype == expected.dtype and read.shape == expected.shape
            assert read.tobytes() == expected.tobytes()
            assert read.flags.writeable


def test_a_record_reads_back_as_flowers_record_does():
    state = {
        "w": torch.randn(3, 4),
        "t": torch.randn(4, 3).t(),  # a transposed view: Fortran-ordered bytes
        "count": torch.tensor(7),  # a 0-d batch-norm counter
    }
    ours, flowers = torch_record(state), ArrayRecord(state)
    assert list(ours) == list(flowers)
    assert all(ours[k].data == flowers[k].data for k in state)
    back = to_torch(ours)
    for name, tensor in flowers.to_torch_state_dict().items():
        assert torch.equal(back[name], tensor) and back[name].shape == tensor.shape
    numbers = to_numpy(to_record({k: v.numpy() for k, v in state.items()}))
    assert all(np.array_equal(numbers[k], state[k].numpy()) for k in state)
