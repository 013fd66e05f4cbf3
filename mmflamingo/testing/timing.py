"""Timing two implementations of the same work fairly (for benchmarks)."""
import statistics
import time
from typing import Any, Callable, Tuple


def alternate(run_a: Callable[[], Any], run_b: Callable[[], Any],
              repeats: int) -> Tuple[float, float, Any, Any]:
    """Time two functions in turn, after a warm-up call of each.

    Alternating means a change in the machine's load hits both.

    Returns:
        tuple: The median seconds of ``run_a`` and of ``run_b``, and what
        their warm-up calls returned.
    """
    first_a, first_b = run_a(), run_b()
    times_a, times_b = [], []
    for _ in range(repeats):
        for run, times in ((run_a, times_a), (run_b, times_b)):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
    return (statistics.median(times_a), statistics.median(times_b), first_a,
            first_b)
