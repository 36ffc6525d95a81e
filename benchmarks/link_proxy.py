"""A limited network link in front of the sandbox: a TCP proxy with bandwidth, delay and byte counts.

    with LinkProxy(("127.0.0.1", sandbox_port), LinkModel()) as link:
        ...  # clients connect to link.url instead of the sandbox; TLS passes through untouched

Each direction (up: client → sandbox, down: sandbox → client) is one bottleneck shared by every
connection: a chunk leaves it after the chunks read before it (from any connection) at the
direction's rate, and arrives at the far end half a round trip later. Connections are not
serialised by each other beyond that: each has its own delivery queue. A bounded buffer per
direction (the bytes on the wire plus a router queue of one round trip's worth) and per connection
pushes back on the senders as TCP would, so ten uploads share the link instead of the first one
taking it all. A new connection waits one round trip before its first byte goes on (TCP's
handshake). Not modelled: TCP's slow start and congestion control (the proxy's loopback sockets
have none to speak of), loss, jitter.
"""

import asyncio
import itertools
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil
from pydantic import BaseModel, Field

CHUNK_BYTES = 64 * 1024
_STOP_TIMEOUT_SECONDS = 10.0


class LinkModel(BaseModel):
    """The link between our client and Salesforce."""

    up_mbit_per_s: float = Field(default=100.0, gt=0, description="Mbit/s, client → org")
    down_mbit_per_s: float = Field(default=100.0, gt=0, description="Mbit/s, org → client")
    rtt_ms: float = Field(default=20.0, ge=0, description="round trip in ms, half each way")

    def describe(self) -> str:
        return (
            f"{self.up_mbit_per_s:g} Mbit/s up, {self.down_mbit_per_s:g} Mbit/s down, "
            f"{self.rtt_ms:g} ms round trip"
        )


class ConnectionTraffic(BaseModel):
    """Bytes one proxied connection carried (TLS records, HTTP headers and bodies alike)."""

    number: int
    bytes_up: int = 0
    bytes_down: int = 0


class LinkTraffic(BaseModel):
    """What crossed the link: totals, and how many connections carried it."""

    connections: int
    bytes_up: int
    bytes_down: int

    def since(self, before: "LinkTraffic") -> "LinkTraffic":
        return LinkTraffic(
            connections=self.connections - before.connections,
            bytes_up=self.bytes_up - before.bytes_up,
            bytes_down=self.bytes_down - before.bytes_down,
        )


class _Budget:
    """Bytes that may be held at once; takers wait for room, and an empty budget admits anything."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._held = 0
        self._room = asyncio.Condition()

    async def take(self, size: int) -> None:
        async with self._room:
            await self._room.wait_for(lambda: self._held == 0 or self._held + size <= self.capacity)
            self._held += size

    async def give(self, size: int) -> None:
        async with self._room:
            self._held -= size
            self._room.notify_all()


class _Direction:
    """One direction of the link: a FIFO bottleneck every connection shares, then the delay."""

    def __init__(self, mbit_per_s: float, delay_seconds: float) -> None:
        self.bytes_per_second = mbit_per_s * 1e6 / 8
        self.delay = delay_seconds
        # The bytes on the wire (rate × delay) plus a router queue of one round trip at this rate.
        self.buffer = _Budget(max(CHUNK_BYTES, int(self.bytes_per_second * delay_seconds * 3)))
        self.burst_seconds = CHUNK_BYTES / self.bytes_per_second
        self._free_at = 0.0

    def arrival(self, size: int, now: float) -> float:
        """When ``size`` bytes, put on the link at ``now``, arrive at the far end."""
        # A token bucket one chunk deep: a chunk read a few ms late (the proxy waited for a core)
        # may go out at once, as if it had been on time; a link idle for longer saves no more.
        start = max(now - self.burst_seconds, self._free_at)
        self._free_at = start + size / self.bytes_per_second
        return max(now, self._free_at) + self.delay


class _Pipe:
    """One connection's bytes in one direction, delivered in order at the times the link says."""

    def __init__(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        direction: _Direction,
        count: Callable[[int], None],
    ) -> None:
        self.source, self.sink, self.direction, self.count = source, sink, direction, count
        self.queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        # This connection's own bound (as a TCP window would be): at most the link's buffer
        # read from the sender and not yet delivered.
        self.pending = _Budget(direction.buffer.capacity)

    async def read(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self.pending.take(CHUNK_BYTES)
            data = await self.source.read(CHUNK_BYTES)
            await self.pending.give(CHUNK_BYTES - len(data))
            if not data:
                await self.queue.put((loop.time() + self.direction.delay, b""))
                return
            self.count(len(data))
            await self.direction.buffer.take(len(data))
            await self.queue.put((self.direction.arrival(len(data), loop.time()), data))

    async def deliver(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            arrives, data = await self.queue.get()
            await asyncio.sleep(max(0.0, arrives - loop.time()))
            if not data:
                if self.sink.can_write_eof():
                    self.sink.write_eof()
                return
            await self.direction.buffer.give(len(data))
            self.sink.write(data)
            await self.sink.drain()
            await self.pending.give(len(data))


class LinkProxy:
    """The proxy, in a process of its own (no lock or core shared with ours), inside ``with``.

    Asked for its counters over its stdin and stdout (a JSON line each way); its CPU is its own,
    apart from the client's and the sandbox's.
    """

    def __init__(self, target: tuple[str, int], link: LinkModel) -> None:
        self.target = target
        self.link = link
        self.port = 0

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def connections(self) -> list[ConnectionTraffic]:
        """Every connection so far, with its bytes up and down."""
        return [ConnectionTraffic.model_validate(item) for item in self._ask("connections")]

    def traffic(self) -> LinkTraffic:
        connections = self.connections()
        return LinkTraffic(
            connections=len(connections),
            bytes_up=sum(c.bytes_up for c in connections),
            bytes_down=sum(c.bytes_down for c in connections),
        )

    def cpu_seconds(self) -> float:
        times = psutil.Process(self._process.pid).cpu_times()
        return times.user + times.system

    def __enter__(self) -> "LinkProxy":
        host, port = self.target
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.link_proxy",
                host,
                str(port),
                self.link.model_dump_json(),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        self.port = int(self._answer())
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._process.stdin is not None
        self._process.stdin.close()  # end of input: the proxy stops
        try:
            self._process.wait(_STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def _ask(self, question: str) -> Any:
        assert self._process.stdin is not None
        self._process.stdin.write(question + "\n")
        self._process.stdin.flush()
        return self._answer()

    def _answer(self) -> Any:
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError(f"the link proxy ended (exit {self._process.poll()})")
        return json.loads(line)


class _LinkServer:
    """What runs in the proxy's process: the listening socket and every connection's pipes."""

    def __init__(self, target: tuple[str, int], link: LinkModel) -> None:
        self.target = target
        self.link = link
        self.connections: list[ConnectionTraffic] = []
        self._numbers = itertools.count(1)

    async def serve(self) -> None:
        """Serve until stdin ends, answering each line of it (a question) on stdout."""
        half_trip = self.link.rtt_ms / 2000
        up = _Direction(self.link.up_mbit_per_s, half_trip)
        down = _Direction(self.link.down_mbit_per_s, half_trip)
        tasks: set[asyncio.Task[None]] = set()

        def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.ensure_future(self._carry(up, down, reader, writer))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        questions = asyncio.StreamReader()
        await asyncio.get_running_loop().connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(questions), sys.stdin
        )
        server = await asyncio.start_server(accept, "127.0.0.1", 0)
        _tell(server.sockets[0].getsockname()[1])
        async with server:
            # Anything but "connections", or the end of input (the parent is done, or gone): stop.
            while (await questions.readline()).strip() == b"connections":
                _tell([traffic.model_dump() for traffic in self.connections])
            for task in list(tasks):
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _carry(
        self,
        up: _Direction,
        down: _Direction,
        client_in: asyncio.StreamReader,
        client_out: asyncio.StreamWriter,
    ) -> None:
        traffic = ConnectionTraffic(number=next(self._numbers))
        self.connections.append(traffic)
        try:
            # TCP's handshake costs a round trip before the client's first byte can leave.
            await asyncio.sleep(self.link.rtt_ms / 1000)
            server_in, server_out = await asyncio.open_connection(*self.target)
        except OSError:
            client_out.close()
            return

        def count_up(size: int) -> None:
            traffic.bytes_up += size

        def count_down(size: int) -> None:
            traffic.bytes_down += size

        pipes = [
            _Pipe(client_in, server_out, up, count_up),
            _Pipe(server_in, client_out, down, count_down),
        ]
        try:
            async with asyncio.TaskGroup() as group:
                for pipe in pipes:
                    group.create_task(pipe.read())
                    group.create_task(pipe.deliver())
        except* (ConnectionError, OSError):
            pass  # one side went away: close both, as a broken link would
        finally:
            for writer in (client_out, server_out):
                writer.close()


def _tell(answer: object) -> None:
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()


def main() -> None:
    host, port, link = sys.argv[1:4]
    asyncio.run(_LinkServer((host, int(port)), LinkModel.model_validate_json(link)).serve())


if __name__ == "__main__":
    main()
