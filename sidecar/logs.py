"""JSON-lines logs: one object per line, with the current request's id on every line.

The request id lives in a context variable set by the HTTP middleware, so every log call made
while serving a request (routes, pipeline, cache, scorer) carries it without being passed it.
Fields given with `extra={...}` become top-level keys. Errors carry the whole exception chain
(`__cause__`/`__context__`) as text in `exc`.
"""

from __future__ import annotations

import atexit
import json
import logging
import logging.handlers
import queue
import sys
import time
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Any

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

# Attributes every LogRecord has; anything else on a record came from `extra` (uvicorn's
# `color_message` is its message again, with terminal colours).
_RECORD_FIELDS = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
) | {"message", "asctime", "taskName", "request_id", "color_message"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = getattr(record, "request_id", None) or request_id.get()
        if rid:
            out["request_id"] = rid
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and key not in out:
                out[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            out["exc"] = self.formatException(record.exc_info)  # includes the chain
            out["exc_type"] = record.exc_info[0].__name__
        return json.dumps(out, default=str, ensure_ascii=False)


class RequestIdFilter(logging.Filter):
    """Stamps the current request id on records (also for handlers with other formatters)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = request_id.get()
        return True


class NeverWaits(logging.handlers.QueueHandler):
    """The root handler of a serving process: hands each record to the writer thread and goes
    on. Writing to stderr from the event loop would stall every request whenever whoever reads
    the stream stalls (a full pipe blocks the write); here a full queue drops the record and
    counts it (`dropped`), and the writer says how many once the stream moves again."""

    def __init__(self, records: queue.Queue[logging.LogRecord | None]) -> None:
        super().__init__(records)
        self.dropped = 0

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        # as it is: the writer's JsonFormatter reads the message, exc_info and extra fields
        return record

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1


class _Writer(logging.handlers.QueueListener):
    """Writes the queued records on its own thread, then reports lines dropped meanwhile."""

    def __init__(self, records: queue.Queue[Any], front: NeverWaits, out: logging.Handler):
        super().__init__(records, out)
        self.front = front
        self.reported = 0

    def handle(self, record: logging.LogRecord) -> None:
        super().handle(record)
        dropped = self.front.dropped
        if dropped > self.reported:
            note = logging.LogRecord(
                "sidecar.logging",
                logging.WARNING,
                __file__,
                0,
                "log lines dropped: the log stream was not read",
                None,
                None,
            )
            note.dropped_lines = dropped - self.reported
            self.reported = dropped
            super().handle(note)

    def stop_within(self, timeout_s: float) -> None:
        """Write what is queued and end, waiting at most `timeout_s` (a stalled stream must
        not hold the process's exit)."""
        thread = self._thread  # QueueListener's own
        if thread is None:
            return
        try:
            self.queue.put(self._sentinel, timeout=timeout_s)  # type: ignore[attr-defined]
        except queue.Full:
            return
        thread.join(timeout_s)
        self._thread = None


_writer: _Writer | None = None
QUEUED_RECORDS = 10_000  # held while the stream is stalled; then records are dropped and counted


def configure(level: int | str = logging.INFO, stream: IO[str] | None = None) -> NeverWaits:
    """Send the root logger (and uvicorn's) to JSON lines on `stream` (stderr), written by a
    thread of their own (see NeverWaits). Calling it again replaces the previous set-up."""
    global _writer
    out = logging.StreamHandler(stream or sys.stderr)
    out.setFormatter(JsonFormatter())
    records: queue.Queue[Any] = queue.Queue(maxsize=QUEUED_RECORDS)
    front = NeverWaits(records)
    front.addFilter(RequestIdFilter())  # here: the request id lives on the caller's context
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    if _writer is not None:
        _writer.stop_within(2.0)
    _writer = _Writer(records, front, out)
    _writer.start()
    atexit.register(_writer.stop_within, 2.0)
    root.addHandler(front)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    return front


def stop(timeout_s: float = 2.0) -> None:
    """Undo `configure`: write what is queued (within `timeout_s`) and detach its handler."""
    global _writer
    if _writer is None:
        return
    logging.getLogger().removeHandler(_writer.front)
    _writer.stop_within(timeout_s)
    _writer = None


def flush(timeout_s: float = 5.0) -> bool:
    """Wait until the writer has written what is queued (tests; False if it did not in time)."""
    writer = _writer
    if writer is None:
        return True
    deadline = time.monotonic() + timeout_s
    while writer.queue.unfinished_tasks and time.monotonic() < deadline:  # type: ignore[attr-defined]
        time.sleep(0.005)
    return not writer.queue.unfinished_tasks  # type: ignore[attr-defined]


def uvicorn_log_config() -> dict[str, Any]:
    """A uvicorn `log_config` that leaves the handlers installed by `configure` alone."""
    return {"version": 1, "disable_existing_loggers": False}
