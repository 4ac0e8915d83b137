"""A TCP proxy that can hang: a network partition between one client and a service,
while other clients still reach it."""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from collections.abc import Iterator


class FreezableProxy:
    """Forwards 127.0.0.1:`port` to `target`; while frozen, accepts connections and
    bytes but forwards nothing (calls through it time out), and forwards what waited
    once thawed. Setting `target` sends new connections elsewhere (a failover behind a
    stable address)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self._flowing = threading.Event()
        self._flowing.set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="proxy")

    def freeze(self) -> None:
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self._listener, selectors.EVENT_READ, None)
        pending: dict[socket.socket, bytearray] = {}  # bytes waiting to go to each socket
        peers: dict[socket.socket, socket.socket] = {}
        while not self._stop.is_set():
            for key, _ in selector.select(timeout=0.05):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self._listener:
                    client, _ = self._listener.accept()
                    try:
                        server = socket.create_connection(self.target, timeout=1)
                    except OSError:  # nothing listens there (yet): as if refused
                        client.close()
                        continue
                    for end, other in ((client, server), (server, client)):
                        end.setblocking(False)
                        peers[end] = other
                        pending[other] = bytearray()
                        selector.register(end, selectors.EVENT_READ, None)
                    continue
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    other = peers.pop(sock, None)
                    if other is None:  # closed as the other end of one closed before
                        continue
                    peers.pop(other, None)
                    for end in (sock, other):
                        with contextlib.suppress(KeyError, ValueError):
                            selector.unregister(end)
                        pending.pop(end, None)
                        end.close()
                    continue
                pending[peers[sock]] += data
            if self._flowing.is_set():
                for sock, waiting in pending.items():
                    if waiting:
                        with contextlib.suppress(BlockingIOError, OSError):
                            sent = sock.send(waiting)
                            del waiting[:sent]
        for sock in (*peers, self._listener):
            sock.close()

    @contextlib.contextmanager
    def running(self) -> Iterator[FreezableProxy]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(5)
