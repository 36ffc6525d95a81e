"""The benchmarks' link proxy: it holds each direction to its rate, delays by the round trip, counts.

Timings have a hard lower bound (the link's model: a proxy that passed bytes straight through
fails them) and a loose upper bound (the machine is shared).
"""

import socket
import socketserver
import statistics
import threading
import time
from collections.abc import Iterator

import pytest

from benchmarks.link_proxy import CHUNK_BYTES, LinkModel, LinkProxy, LinkTraffic

MB = 1_000_000
SLACK = 1.6  # upper bound on a shared 2-core machine


class _Peer(socketserver.BaseRequestHandler):
    """A server speaking a tiny protocol: ``u<n>`` take n bytes then answer ``k``; ``d<n>`` send
    n bytes; ``p`` answer ``p``. Lengths are 8 bytes, big-endian."""

    def handle(self) -> None:
        while command := self.request.recv(1):
            if command == b"u":
                remaining = _length(self.request)
                while remaining:
                    remaining -= len(self.request.recv(min(1 << 20, remaining)))
                self.request.sendall(b"k")
            elif command == b"d":
                self.request.sendall(b"d" * _length(self.request))
            else:
                self.request.sendall(b"p")


def _length(connection: socket.socket) -> int:
    return int.from_bytes(_receive(connection, 8), "big")


def _receive(connection: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = connection.recv(min(1 << 20, size - len(data)))
        assert chunk, "connection closed early"
        data += chunk
    return data


@pytest.fixture
def peer_address() -> Iterator[tuple[str, int]]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Peer)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[0], server.server_address[1]
    server.shutdown()
    server.server_close()


def _burst_seconds(mbit_per_s: float) -> float:
    """The token bucket's depth (one chunk) in time: how far a transfer may beat the rate."""
    return CHUNK_BYTES * 8 / (mbit_per_s * 1e6)


def _connect(proxy: LinkProxy) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proxy.port))


def _upload(connection: socket.socket, size: int) -> float:
    started = time.perf_counter()
    connection.sendall(b"u" + size.to_bytes(8, "big") + b"u" * size)
    assert _receive(connection, 1) == b"k"
    return time.perf_counter() - started


def _download(connection: socket.socket, size: int) -> float:
    started = time.perf_counter()
    connection.sendall(b"d" + size.to_bytes(8, "big"))
    _receive(connection, size)
    return time.perf_counter() - started


def _ping(connection: socket.socket) -> float:
    started = time.perf_counter()
    connection.sendall(b"p")
    assert _receive(connection, 1) == b"p"
    return time.perf_counter() - started


def test_each_direction_is_held_to_its_own_rate(peer_address: tuple[str, int]) -> None:
    link = LinkModel(up_mbit_per_s=40, down_mbit_per_s=100, rtt_ms=20)
    with LinkProxy(peer_address, link) as proxy, _connect(proxy) as connection:
        _ping(connection)
        up = _upload(connection, 2 * MB)
        down = _download(connection, 5 * MB)
    # 2 MB at 40 Mbit/s and 5 MB at 100 Mbit/s: 0.4 s each, plus a round trip.
    for seconds, mbit_per_s in ((up, 40), (down, 100)):
        assert 0.42 - _burst_seconds(mbit_per_s) <= seconds <= 0.42 * SLACK


def test_a_request_takes_a_round_trip_and_a_new_connection_one_more(
    peer_address: tuple[str, int],
) -> None:
    with LinkProxy(peer_address, LinkModel(rtt_ms=40)) as proxy:
        started = time.perf_counter()
        with _connect(proxy) as connection:
            _ping(connection)
            first = time.perf_counter() - started
            pings = [_ping(connection) for _ in range(5)]
    assert 0.08 <= first <= 0.08 * SLACK
    assert 0.04 <= statistics.median(pings) <= 0.04 * SLACK


def test_connections_share_the_link(peer_address: tuple[str, int]) -> None:
    """Two uploads at once take as long as one of both sizes: one bottleneck, fairly shared."""
    seconds: list[float] = []
    with LinkProxy(peer_address, LinkModel(up_mbit_per_s=50)) as proxy:

        def upload() -> None:
            with _connect(proxy) as connection:
                _ping(connection)
                seconds.append(_upload(connection, MB + MB // 2))

        threads = [threading.Thread(target=upload) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    # 3 MB at 50 Mbit/s: 0.48 s. Had each its own link, each would take 0.24 s; had the first
    # taken the link, it would finish in 0.24 s and the second in 0.48 s.
    assert len(seconds) == 2
    assert min(seconds) >= 0.48 * 0.85
    assert max(seconds) <= (0.48 + 0.02) * SLACK


def test_bytes_up_and_down_are_counted_per_connection(peer_address: tuple[str, int]) -> None:
    with LinkProxy(peer_address, LinkModel()) as proxy:
        with _connect(proxy) as first:
            _upload(first, 1_000)
            _download(first, 3_000)
        with _connect(proxy) as second:
            _ping(second)
        time.sleep(0.1)  # the proxy sees both ends close
        connections = proxy.connections()
        traffic = proxy.traffic()
    assert [(c.number, c.bytes_up, c.bytes_down) for c in connections] == [
        (1, 9 + 1_000 + 9, 1 + 3_000),  # commands and lengths: 9 bytes each
        (2, 1, 1),
    ]
    assert traffic == LinkTraffic(connections=2, bytes_up=1_019, bytes_down=3_002)
    assert traffic.since(LinkTraffic(connections=1, bytes_up=19, bytes_down=2)) == LinkTraffic(
        connections=1, bytes_up=1_000, bytes_down=3_000
    )
