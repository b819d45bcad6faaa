"""What part of a run's start-up is Ray's own: importing it, starting a session, two actors.

Usage::

    .venv/bin/python benchmarks/ray_startup.py

The actors import what a Flower client actor imports (torch, flwr), as the
simulation's do before their first message.
"""

from __future__ import annotations

import time


def main() -> None:
    """Print the three times."""
    start = time.perf_counter()
    import ray

    imported = time.perf_counter()
    ray.init(address="local", include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    up = time.perf_counter()

    @ray.remote(num_cpus=1)
    class Client:
        def ping(self) -> int:
            import flwr  # noqa: F401
            import torch  # noqa: F401

            return 1

    actors = [Client.remote() for _ in range(2)]
    ray.get([a.ping.remote() for a in actors])
    ready = time.perf_counter()
    print(f"import ray {imported - start:.2f} s")
    print(f"ray.init {up - imported:.2f} s")
    print(f"2 actors importing torch and flwr {ready - up:.2f} s")
    ray.shutdown()


if __name__ == "__main__":
    main()
