"""Progress lines on stderr, the one thing every part of the fault suite writes: the scenarios,
the shared processes (bench.faults.common) and the real engine (bench.faults.engine). Below all
of them, so none imports another to say what it is doing."""

from __future__ import annotations

import sys
import time


def progress(message: str) -> None:
    print(f"[faults {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
