"""A real TCP proxy on 127.0.0.1 that stands in front of a dependency (an engine, a peer
sidecar): it can hold every reply back, be taken down and brought back on the same port, and
be pointed at another upstream port.

- `delay`: seconds added before the first byte of each reply (once per request on a kept-alive
  connection, not per chunk, so a large answer is not delayed many times over). Requests go
  through at once.
- `down()`: the listening port is closed (new connections are refused, as by a dead process)
  and every open connection is reset; `up(port)` listens on the same port again, forwarding to
  `port` (an engine restarted on new ports).

The sidecar talks to a real peer over real sockets, as it would to a slow or dead node. Threads,
not asyncio: the load generators run their own event loops in the main thread.
"""

from __future__ import annotations

import socket
import struct
import threading
from dataclasses import dataclass, field


@dataclass(eq=False)  # hashed by identity: held in a set
class _Pair:
    client: socket.socket
    upstream: socket.socket
    sent: int = 0  # chunks forwarded to the upstream (a new request starts a new reply)
    delayed: int = 0  # `sent` when the current reply was last held back
    closed: threading.Event = field(default_factory=threading.Event)


class Proxy:
    def __init__(self, upstream_port: int, delay: float = 0.0) -> None:
        self.upstream_port = upstream_port
        self.delay = delay
        self.port = 0
        self._listener: socket.socket | None = None
        self._pairs: set[_Pair] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self.refused_upstream = 0  # connections reset because the upstream refused
        self._listen()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _listen(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))  # 0 the first time: a port from the OS
        listener.listen(128)
        self.port = int(listener.getsockname()[1])
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        """Refuse new connections and reset the open ones."""
        listener, self._listener = self._listener, None
        if listener is not None:
            _close(listener)
        with self._lock:
            pairs = list(self._pairs)
        for pair in pairs:
            self._reset(pair)

    def up(self, upstream_port: int | None = None) -> None:
        """Listen again on the same port; forward to `upstream_port` from now on."""
        if upstream_port is not None:
            self.upstream_port = upstream_port
        if self._listener is None:
            self._listen()

    def stop(self) -> None:
        self._stopped.set()
        self.down()

    def _accept(self, listener: socket.socket) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = listener.accept()
            except OSError:  # closed by down() or stop()
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            except OSError:
                self.refused_upstream += 1
                _reset_socket(client)
                continue
            upstream.settimeout(None)
            pair = _Pair(client, upstream)
            with self._lock:
                self._pairs.add(pair)
            threading.Thread(target=self._requests, args=(pair,), daemon=True).start()
            threading.Thread(target=self._replies, args=(pair,), daemon=True).start()

    def _requests(self, pair: _Pair) -> None:
        try:
            while data := pair.client.recv(65536):
                pair.sent += 1
                pair.upstream.sendall(data)
        except OSError:
            pass
        self._close(pair)

    def _replies(self, pair: _Pair) -> None:
        try:
            while data := pair.upstream.recv(65536):
                if self.delay > 0 and pair.delayed != pair.sent:
                    pair.delayed = pair.sent
                    if pair.closed.wait(self.delay):  # closed meanwhile: drop the reply
                        break
                pair.client.sendall(data)
        except OSError:
            pass
        self._close(pair)

    def _close(self, pair: _Pair) -> None:
        if pair.closed.is_set():
            return
        pair.closed.set()
        for sock in (pair.client, pair.upstream):
            _close(sock)
        with self._lock:
            self._pairs.discard(pair)

    def _reset(self, pair: _Pair) -> None:
        _reset_socket(pair.client)
        self._close(pair)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def _reset_socket(sock: socket.socket) -> None:
    """Close with a TCP reset (linger 0), as a peer that died would leave it."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RD)  # wakes a thread blocked reading it; sends nothing
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass
