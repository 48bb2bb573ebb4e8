"""The fault suite's own parts (bench/faults): the proxy against a real local socket server,
the record summaries, the fuzz mutations, the table and the scenario selection. No sidecar is
started here; `python -m bench.faults` runs the scenarios themselves."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from bench.faults.cli import SCENARIOS, parse_only
from bench.faults.common import by_phase, late, late_by_sidecar, non_2xx, recovery_s
from bench.faults.fuzz import mutate
from bench.faults.proxy import Proxy
from bench.faults.report import Row, table


class Echo:
    """A TCP server on a free port that answers every chunk it reads with `reply`, in two
    writes (so a proxy that delayed every chunk would delay it twice)."""

    def __init__(self, reply: bytes = b"pong-one|pong-two") -> None:
        self.reply = reply
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = int(self.listener.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                while conn.recv(1024):
                    half = len(self.reply) // 2
                    conn.sendall(self.reply[:half])
                    time.sleep(0.05)
                    conn.sendall(self.reply[half:])
            except OSError:
                pass

    def close(self) -> None:
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()


@pytest.fixture
def echo() -> Iterator[Echo]:
    server = Echo()
    yield server
    server.close()


def ask(sock: socket.socket, size: int) -> bytes:
    sock.sendall(b"ping")
    got = b""
    while len(got) < size:
        chunk = sock.recv(1024)
        if not chunk:
            break
        got += chunk
    return got


def test_the_proxy_forwards_and_delays_each_reply_once(echo: Echo) -> None:
    proxy = Proxy(echo.port, delay=0.3)
    try:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
            for _ in range(2):  # two requests on one connection: each reply held back once
                started = time.monotonic()
                assert ask(sock, len(echo.reply)) == echo.reply
                took = time.monotonic() - started
                assert 0.3 <= took < 0.6, took  # not 0.6+: the reply's second chunk goes at once
            proxy.delay = 0.0
            started = time.monotonic()
            assert ask(sock, len(echo.reply)) == echo.reply
            assert time.monotonic() - started < 0.25
    finally:
        proxy.stop()


def test_the_proxy_refuses_while_down_and_comes_back_on_its_port(echo: Echo) -> None:
    proxy = Proxy(echo.port)
    port = proxy.port
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as open_one:
            assert ask(open_one, len(echo.reply)) == echo.reply
            proxy.down()
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", port), timeout=5)
            # the connection that was open is cut
            try:
                assert open_one.recv(1024) == b""
            except ConnectionResetError:
                pass
        other = Echo(b"from-the-restarted-one")
        try:
            proxy.up(other.port)
            assert proxy.port == port
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                assert ask(sock, len(other.reply)) == other.reply
        finally:
            other.close()
    finally:
        proxy.stop()


def test_the_proxy_resets_clients_when_the_upstream_refuses() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        proxy = Proxy(int(unused.getsockname()[1]))
        try:
            # the reset may come while the client still connects, as it sends, or as it reads
            try:
                with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
                    sock.sendall(b"ping")
                    assert sock.recv(1024) == b""
            except (ConnectionResetError, BrokenPipeError):
                pass
            deadline = time.monotonic() + 5
            while proxy.refused_upstream == 0 and time.monotonic() < deadline:
                time.sleep(0.01)  # the proxy counts once its upstream attempt has failed
            assert proxy.refused_upstream == 1
        finally:
            proxy.stop()


def test_recovery_is_from_the_first_good_answer_after_the_last_bad_one() -> None:
    records = [
        {"t": 0.0, "end": 0.1, "status": 200},
        {"t": 1.0, "end": 1.1, "status": 503},
        {"t": 2.0, "end": 2.1, "status": 503},
        {"t": 3.0, "end": 3.1, "status": 200},
        {"t": 4.0, "end": 4.1, "status": 200},
    ]
    assert recovery_s(records, 1.5, lambda r: r["status"] == 200) == pytest.approx(1.5)
    assert recovery_s(records, 2.5, lambda r: r["status"] == 200) == pytest.approx(0.6)
    assert recovery_s(records[:3], 1.5, lambda r: r["status"] == 200) is None
    assert non_2xx(records) == {"503": 2}
    phases = by_phase(records, {"before": 0.0, "down": 1.0, "after": 3.0})
    assert [len(v) for v in phases.values()] == [1, 2, 2]


def test_late_counts_past_the_timeout_and_its_slack() -> None:
    records = [
        {"timeout_ms": 1000, "ms": 1049.0, "total_ms": 1000.0},
        {"timeout_ms": 1000, "ms": 1051.0, "total_ms": 1051.0},
        {"timeout_ms": None, "ms": 9999.0},
    ]
    assert late(records) == [records[1]]
    assert late_by_sidecar(records) == [records[1]]


def test_mutations_replace_insert_and_cut() -> None:
    assert mutate(b"abcd", [(1, ord("X"), 0)]) == b"aXcd"
    assert mutate(b"abcd", [(1, ord("X"), 1)]) == b"aXbcd"
    assert mutate(b"abcd", [(2, 0, 2)]) == b"ab"
    assert mutate(b"", [(7, 65, 0), (9, 66, 1)]) == b"B"  # positions wrap, never raise


def test_only_selects_scenarios_in_suite_order() -> None:
    assert parse_only(None) == list(SCENARIOS)
    assert parse_only(["engine_kill,redis", "fuzz"]) == ["redis", "fuzz", "engine_kill"]
    with pytest.raises(SystemExit, match="unknown scenario"):
        parse_only(["nope"])


def test_the_table_has_a_verdict_column() -> None:
    text = table(
        [Row("a", "1", "none", "-", "fine", True), Row("b", "2", "500: 1", "-", "x", False)]
    )
    lines = text.splitlines()
    assert lines[0].split(" | ")[-1].strip() == "verdict"
    assert lines[2].endswith("PASS") and lines[3].endswith("FAIL")


def test_the_load_panels_draw_each_status_with_its_count_and_the_deadline() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bench.faults import remote, slow_engine

    records = [
        {"t": 0.1, "ms": 80.0, "status": 200, "rerank_status": "ok"},
        {"t": 2.0, "ms": 1990.0, "status": 504, "rerank_status": "fallback"},
        {"t": 2.5, "ms": 2010.0, "status": 504, "rerank_status": "fallback"},
    ]
    result = {
        "records": records,
        "marks": {"normal": 0.0, "slow": 1.0, "after": 3.0},
        "timeout_ms": 2000,
        "slack_ms": 50.0,
        "delay_s": 1.5,
    }
    fig, (by_status, by_rerank) = plt.subplots(1, 2)
    slow_engine.panel(by_status, result)
    remote.panel(by_rerank, result)
    labels = [t.get_text() for t in by_status.get_legend().get_texts()]
    assert labels[:2] == ["200 (1)", "504 (2)"]
    assert {"engine slow", "timeout_ms", "+50 ms"} <= set(labels)
    labels = [t.get_text() for t in by_rerank.get_legend().get_texts()]
    assert labels[:2] == ["fallback (2)", "ok (1)"] and "peer slow" in labels
    plt.close(fig)
