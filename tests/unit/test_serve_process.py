"""What `serve` sets for its own process."""

import sys

import numpy  # noqa: F401  (loads OpenBLAS, which own_process limits)
import pytest
from pydantic import ValidationError
from threadpoolctl import threadpool_info, threadpool_limits

from sidecar.cli.serve import own_process
from sidecar.config import Settings


def test_serve_sets_the_interpreters_switch_interval_from_the_settings() -> None:
    before = sys.getswitchinterval()
    try:
        own_process(Settings(scorer={"gil_switch_interval_ms": 0.25}))
        assert sys.getswitchinterval() == pytest.approx(0.00025)
        own_process(Settings())  # the default: 0.1 ms, not Python's 5 ms
        assert sys.getswitchinterval() == pytest.approx(0.0001)
    finally:
        sys.setswitchinterval(before)


def test_serve_keeps_numpys_blas_to_one_thread() -> None:
    with threadpool_limits(limits=None):  # restores what the test changes
        own_process(Settings())
        blas = [p for p in threadpool_info() if p["user_api"] == "blas"]
        assert blas and all(p["num_threads"] == 1 for p in blas)


@pytest.mark.parametrize("value", [0, -1, 1000])
def test_a_switch_interval_out_of_range_is_refused(value: float) -> None:
    with pytest.raises(ValidationError, match="gil_switch_interval_ms"):
        Settings(scorer={"gil_switch_interval_ms": value})
