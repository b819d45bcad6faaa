"""The headline quantities, each defined once, checked by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pwfl.measures import first_reaching, total_bytes


def test_time_to_target_and_bytes_moved_by_hand():
    rows = pd.DataFrame(
        {
            "round": [1, 2, 3, 4],
            "accuracy": [0.5, 0.91, 0.85, 0.95],
            "sim_time_s": [2.0, 4.5, 7.0, 9.0],
            "bytes_up": [100, None, 300, 50],
        }
    )
    # The first crossing counts, even when a later round falls back below.
    assert first_reaching(rows, 0.9, "round") == 2.0
    assert first_reaching(rows, 0.9, "sim_time_s") == 4.5
    assert first_reaching(rows, 0.95, "round") == 4.0
    assert np.isnan(first_reaching(rows, 0.99, "round"))
    assert total_bytes(rows, "bytes_up") == 450  # an empty cell moved nothing
    assert isinstance(total_bytes(rows, "bytes_up"), int)
