"""How long K=2 aggregation tasks take to come back after the server sat idle, with and
without Ray's idle-worker reaping (the reason for the runner's ``_system_config``).

Usage::

    .venv/bin/python experiments/bench_ray_task_latency.py

Two actors hold both CPUs, as Flower's client actors do; two ``num_cpus=0``
aggregation tasks of five 0.42M-parameter updates are then submitted after
0 to 7 s of idleness. Prints the round-trip seconds for each setting.
"""

from __future__ import annotations

import subprocess
import sys
import time

SETTINGS = {
    "ray default": "{}",
    "runner setting": '{"idle_worker_killing_time_threshold_ms": 600000}',
}


def measure(system_config: str) -> list[float]:
    """Task round trips after 0, 0, 3, 3 and 7 s idle, in a fresh Ray session."""
    import json

    import numpy as np
    import ray

    from pwfl.aggregation import RayExecutor, Timed, weighted_mean

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        logging_level="ERROR",
        _system_config=json.loads(system_config),
    )

    @ray.remote(num_cpus=1)
    class Holder:
        def ping(self) -> int:
            return 1

    holders = [Holder.remote() for _ in range(2)]
    ray.get([h.ping.remote() for h in holders])
    executor = RayExecutor(workers=2)
    rng = np.random.default_rng(0)
    updates = [({"w": rng.random(420_000, dtype=np.float32)}, 400.0) for _ in range(5)]
    times = []
    for idle in (0, 0, 3, 3, 7):
        time.sleep(idle)
        start = time.perf_counter()
        handles = [executor.submit(Timed(weighted_mean), updates) for _ in range(2)]
        [h.result() for h in handles]
        times.append(time.perf_counter() - start)
    ray.shutdown()
    return times


def main() -> None:
    """Run each setting in its own process and print a table."""
    if len(sys.argv) > 1:
        print(" ".join(f"{t:.3f}" for t in measure(sys.argv[1])))
        return
    print(f"{'setting':<16} seconds after idle 0 s, 0 s, 3 s, 3 s, 7 s")
    for name, config in SETTINGS.items():
        out = subprocess.run([sys.executable, __file__, config], capture_output=True, text=True)
        print(
            f"{name:<16} {out.stdout.strip().splitlines()[-1] if out.stdout else out.stderr[-300:]}"
        )


if __name__ == "__main__":
    main()
