"""Fault injection for integration tests: a loopback TCP proxy that a test can cut and restore.

Put it between a client and a real server (PostgreSQL, Redis): point the client at ``proxy.address``,
then ``cut()`` makes the server unreachable for that client only, for real (its open connections are
reset, new ones are reset at once or, with ``mode="blackhole"``, accepted and never answered), and
``restore()`` forwards again. The server itself keeps running for everyone else. Loopback only: the
proxy binds 127.0.0.1 and refuses a target that is not a loopback address.

    with TcpProxy(("127.0.0.1", 5432)) as proxy:
        url = f"postgresql://postgres@127.0.0.1:{proxy.port}/db"
        proxy.cut(); ...; proxy.restore()
"""

from __future__ import annotations

import contextlib
import ipaddress
import selectors
import socket
import struct
import threading

_LINGER_RESET = struct.pack("ii", 1, 0)  # close with RST, not FIN: the peer sees a reset connection


class TcpProxy:
    """Forwards ``127.0.0.1:port`` to ``target`` in background threads until :meth:`close`.

    ``connections`` counts the connections accepted since start, ``refused`` those reset or held while
    cut (assert on them to show that the client really tried while the server was away).
    """

    def __init__(self, target: tuple[str, int], port: int = 0):
        if not ipaddress.ip_address(socket.gethostbyname(target[0])).is_loopback:
            raise ValueError(f"target {target}: loopback only")
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", port))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self._held: list[socket.socket] = []
        self._mode: str | None = None  # None: forwarding; "reset" or "blackhole": cut
        self._stop = threading.Event()
        self.connections = 0
        self.refused = 0
        self._thread = threading.Thread(target=self._accept, name=f"proxy:{self.port}", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ control
    @property
    def is_cut(self) -> bool:
        return self._mode is not None

    def cut(self, mode: str = "reset") -> None:
        """Make the target unreachable through the proxy: reset every open connection; new ones are
        reset (``reset``) or accepted and never answered (``blackhole``, a dead network path)."""
        if mode not in ("reset", "blackhole"):
            raise ValueError(f"mode {mode!r}: reset or blackhole")
        with self._lock:
            self._mode = mode
            pairs, self._pairs = self._pairs, set()
        for a, b in pairs:  # the pump thread sees the shutdown, exits and closes both with a reset
            _shutdown(a)
            _shutdown(b)

    def restore(self) -> None:
        """Forward again (held blackhole connections are reset: their clients reconnect)."""
        with self._lock:
            self._mode = None
            held, self._held = self._held, []
        for s in held:
            _reset(s)

    def close(self) -> None:
        self._stop.set()
        self.cut()
        self.restore()
        self._thread.join(timeout=2)
        self._listener.close()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ forwarding
    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                mode = self._mode
                if mode is not None:
                    self.refused += 1
                    if mode == "blackhole":
                        self._held.append(client)
                        continue
            if mode == "reset":
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _reset(client)
                continue
            upstream.settimeout(None)
            client.settimeout(None)
            with self._lock:
                if self._mode is not None:  # cut while connecting
                    _reset(client)
                    _reset(upstream)
                    continue
                self._pairs.add((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        sel = selectors.DefaultSelector()
        sel.register(a, selectors.EVENT_READ, b)
        sel.register(b, selectors.EVENT_READ, a)
        try:
            while not self._stop.is_set():
                for key, _ in sel.select(timeout=0.2):
                    data = key.fileobj.recv(65536)
                    if not data:
                        return
                    key.data.sendall(data)
        except (OSError, ValueError):  # reset by cut() or by a peer
            return
        finally:
            sel.close()
            with self._lock:
                self._pairs.discard((a, b))
            _reset(a)
            _reset(b)


def _shutdown(s: socket.socket) -> None:
    with contextlib.suppress(OSError):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    with contextlib.suppress(OSError):
        s.shutdown(socket.SHUT_RDWR)


def _reset(s: socket.socket) -> None:
    with contextlib.suppress(OSError):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    with contextlib.suppress(OSError):
        s.close()
