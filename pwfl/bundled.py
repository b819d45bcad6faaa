"""Small data sets built on this machine with no download: MNIST-1D and scikit-learn's digits.

Usage::

    x_train, y_train, x_test, y_test = mnist1d_arrays(test_fraction=0.2, seed=0)
    x_train, y_train, x_test, y_test = digits_arrays(test_fraction=0.2, seed=0)

``mnist1d`` is MNIST-1D (Greydanus, "Scaling down deep learning with MNIST-1D",
2020, arXiv:2011.14439, section 2): ten 12-point digit templates, each padded,
translated, scaled, sheared and given correlated and white noise, then resampled to
40 points. The ``mnist1d`` package draws it from its templates in code;
``get_dataset()`` would download the paper's pickle instead, so it is never called.
Examples are ``(1, 40)``: one channel of 40 samples, which a 1D convolution reads as
it is and ``mlp``/``logreg`` flatten.

``digits`` is the 1,797 8x8 hand-written digits bundled with scikit-learn
(``sklearn.datasets.load_digits``, the UCI "Optical Recognition of Handwritten
Digits" test set), examples ``(1, 8, 8)`` with pixels 0..16 scaled to [0, 1].

Both return float32 arrays ready to train on (no further normalisation) and
integer labels 0..9.
"""

from __future__ import annotations

import hashlib
import random
from importlib.metadata import version
from pathlib import Path

import numpy as np

from pwfl.records import atomic_savez
from pwfl.seeding import rng_for, seed_for

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]

MNIST1D_SAMPLES = 5000
"""Examples drawn, train and test together: the paper's 4,000 + 1,000."""
MNIST1D_LENGTH = 40
"""Samples per signal (``final_seq_length``), the paper's."""


def stratified_holdout(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Mask of the examples held out for the server: ``fraction`` of every label,
    drawn from ``(seed, "test-split")``."""
    rng = rng_for(seed, "test-split")
    mask = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        idx = np.flatnonzero(labels == label)
        take = int(round(len(idx) * fraction))
        mask[rng.choice(idx, size=take, replace=False)] = True
    return mask


def mnist1d_arrays(test_fraction: float, seed: int, cache: Path | None = None) -> Arrays:
    """MNIST-1D drawn from the experiment's seed, split by ``test_fraction``.

    Drawing 5,000 signals takes about 2 s and every client process loads the set,
    so with ``cache`` (a folder) the arrays are kept there, keyed by the seed, the
    split and the package's version.
    """
    key = repr((version("mnist1d"), MNIST1D_SAMPLES, MNIST1D_LENGTH, test_fraction, seed))
    path = None
    if cache is not None:
        path = cache / f"mnist1d-{hashlib.sha256(key.encode()).hexdigest()[:20]}.npz"
        if path.is_file():
            try:
                with np.load(path) as saved:
                    return tuple(saved[k] for k in ("x_train", "y_train", "x_test", "y_test"))
            except (OSError, ValueError, KeyError):
                path.unlink(missing_ok=True)  # a damaged entry is drawn again
    x, y = _draw_mnist1d(seed_for(seed, "mnist1d") % (2**32))
    held = stratified_holdout(y, test_fraction, seed)
    x = x[:, None, :]  # (N, 40) -> (N, 1, 40): one channel
    got = (x[~held], y[~held], x[held], y[held])
    if path is not None:
        try:
            atomic_savez(
                path, dict(zip(("x_train", "y_train", "x_test", "y_test"), got, strict=True))
            )
        except OSError:
            pass  # a read-only cache only costs time
    return got


def _draw_mnist1d(seed: int) -> tuple[np.ndarray, np.ndarray]:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.seed = seed
    args.num_samples = MNIST1D_SAMPLES
    args.final_seq_length = MNIST1D_LENGTH
    args.train_split = 1.0  # pwfl holds out its own stratified test share
    # make_dataset seeds the global `random` and NumPy generators: put them back, so
    # loading the data changes no other draw of the process.
    state_py, state_np = random.getstate(), np.random.get_state()
    try:
        made = make_dataset(args)
    finally:
        random.setstate(state_py)
        np.random.set_state(state_np)
    return made["x"].astype(np.float32), made["y"].astype(np.int64)


def digits_arrays(test_fraction: float, seed: int) -> Arrays:
    """scikit-learn's 8x8 digits as ``(N, 1, 8, 8)`` in [0, 1], split by ``test_fraction``."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images[:, None, :, :] / 16.0).astype(np.float32)  # pixels 0..16
    y = bunch.target.astype(np.int64)
    held = stratified_holdout(y, test_fraction, seed)
    return x[~held], y[~held], x[held], y[held]
