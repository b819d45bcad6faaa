"""pwfl: parallel-weight federated learning, a research simulator on Flower and Ray."""

__version__ = "0.1.0"
