"""A real TCP proxy on 127.0.0.1 that holds the engine's replies back: an engine "slower than the
deadline" without touching the engine. Requests go through at once; every chunk of the reply
waits `delay` seconds. The sidecar talks to a real peer over a real socket, as it would to a
slow node."""

from __future__ import annotations

import socket
import threading
import time


class SlowProxy:
    def __init__(self, upstream_host: str, upstream_port: int, delay: float) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.delay = delay
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port = int(self._listener.getsockname()[1])
        self._sockets: list[socket.socket] = [self._listener]
        self._stopped = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> SlowProxy:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        for sock in self._sockets:
            try:
                sock.close()
            except OSError:
                pass

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, 0.0), daemon=True).start()
            threading.Thread(
                target=self._pump, args=(upstream, client, self.delay), daemon=True
            ).start()

    def _pump(self, source: socket.socket, target: socket.socket, delay: float) -> None:
        try:
            while not self._stopped.is_set():
                data = source.recv(65536)
                if not data:
                    break
                if delay:
                    # Sleep in small steps so stop() is not held up by a long delay.
                    until = time.monotonic() + delay
                    while time.monotonic() < until and not self._stopped.is_set():
                        time.sleep(0.05)
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
