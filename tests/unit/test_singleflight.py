"""Single flight: concurrent callers with one key share one task; the key is freed after."""

import asyncio

import pytest

from sidecar.cache.singleflight import SingleFlight


async def test_concurrent_callers_share_one_call_and_later_ones_start_afresh() -> None:
    flight: SingleFlight[int] = SingleFlight()
    calls = 0
    gate = asyncio.Event()

    async def work() -> int:
        nonlocal calls
        calls += 1
        mine = calls
        await gate.wait()
        return mine

    tasks = [flight.task("k", work) for _ in range(5)]
    other = flight.task("other", work)
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(*tasks) == [1] * 5
    assert await other == 2
    assert calls == 2 and flight.shared == 4 and len(flight) == 0
    await flight.task("k", work)
    assert calls == 3


async def test_an_error_reaches_every_caller_and_frees_the_key() -> None:
    flight: SingleFlight[int] = SingleFlight()

    async def boom() -> int:
        await asyncio.sleep(0.01)
        raise RuntimeError("model failed")

    tasks = [flight.task("k", boom) for _ in range(3)]
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    assert len(flight) == 0


async def test_one_callers_timeout_does_not_cancel_the_shared_work() -> None:
    flight: SingleFlight[str] = SingleFlight()

    async def slow() -> str:
        await asyncio.sleep(0.05)
        return "done"

    first = flight.task("k", slow)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(first), timeout=0.001)
    assert await flight.task("k", slow) == "done" and flight.shared == 1
