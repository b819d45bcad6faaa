"""pwfl test suite."""
