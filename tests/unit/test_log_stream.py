"""The serving process's log lines go through a writer thread: a stalled log stream (a pipe
nobody reads, here a real one) must not stall the code that logs."""

import json
import logging
import os
import threading

import pytest

from sidecar import logs


@pytest.fixture
def pipe_logging():
    """configure() onto a real pipe; yields (handler, read end); restores the root logger."""
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    read_fd, write_fd = os.pipe()
    stream = os.fdopen(write_fd, "w", buffering=1, encoding="utf-8")
    reader = os.fdopen(read_fd, "r", encoding="utf-8")
    try:
        yield logs.configure(stream=stream), reader
    finally:
        # Unblock a writer still stuck on the full pipe: with the read end closed its writes
        # fail at once (quietly: raiseExceptions off) and it drains the queue and ends.
        reader.close()
        quiet, logging.raiseExceptions = logging.raiseExceptions, False
        try:
            logs.stop(timeout_s=30)
        finally:
            logging.raiseExceptions = quiet
        root.handlers[:] = saved
        root.setLevel(level)
        try:
            stream.close()
        except BrokenPipeError:  # what was left in its buffer had nowhere to go
            pass


def _lines_until(reader, predicate, limit: int = 200_000) -> list[dict]:
    """Read JSON lines from the pipe (in a thread, so a hang fails instead of blocking)."""
    out: list[dict] = []

    def read() -> None:
        for _ in range(limit):
            line = reader.readline()
            if not line:
                return
            out.append(json.loads(line))
            if predicate(out[-1]):
                return

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "the writer never wrote what was asked for"
    return out


def test_logging_does_not_wait_for_a_stalled_stream_and_says_what_it_dropped(pipe_logging) -> None:
    front, reader = pipe_logging
    log = logging.getLogger("test.stall")
    total = logs.QUEUED_RECORDS + 5_000  # well past the pipe's 64 KiB and the queue
    finished = threading.Event()

    def spam() -> None:
        for i in range(total):
            log.info("line %d %s", i, "x" * 200)
        finished.set()

    threading.Thread(target=spam, daemon=True).start()
    # A StreamHandler on the pipe blocks for good after ~300 of these lines.
    assert finished.wait(60), "logging blocked on the unread stream"
    assert front.dropped > 0
    lines = _lines_until(reader, lambda line: line["msg"].startswith("log lines dropped"))
    assert lines[0]["msg"] == "line 0 " + "x" * 200
    note = lines[-1]
    assert note["level"] == "warning" and note["dropped_lines"] == front.dropped
    written = [line for line in lines if line["logger"] == "test.stall"]
    assert len(written) + front.dropped <= total


def test_the_writer_keeps_request_ids_and_exception_chains(pipe_logging) -> None:
    _, reader = pipe_logging
    token = logs.request_id.set("req-42")
    try:
        try:
            raise ValueError("inner")
        except ValueError as exc:
            try:
                raise RuntimeError("outer") from exc
            except RuntimeError:
                logging.getLogger("test.chain").exception("it failed", extra={"stage": "model"})
    finally:
        logs.request_id.reset(token)
    assert logs.flush()
    (line,) = _lines_until(reader, lambda line: line["msg"] == "it failed")
    assert line["request_id"] == "req-42" and line["stage"] == "model"
    assert line["exc_type"] == "RuntimeError"
    assert "ValueError: inner" in line["exc"] and "RuntimeError: outer" in line["exc"]
