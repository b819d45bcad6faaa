"""pwfl: parallel-weight federated learning, a research simulator on Flower and Ray."""

from pwfl import arithmetic as _arithmetic

# Before anything imports PyTorch: its CPU kernels are chosen when it first runs, so
# the portable pins (pwfl.arithmetic) must already be in the environment. A config
# that asks for "native" undoes them when it is read, still before PyTorch loads.
_arithmetic.pin(_arithmetic.default_mode())

__version__ = "0.1.0"
