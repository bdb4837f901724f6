"""The fault proxy: it forwards TCP, Socket.IO and PostgreSQL, and breaks them on demand."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest
import socketio

from tests.fakes.tcp_proxy import TcpProxy
from tests.harness import HubClient, HubHarness

ROOT = Path(__file__).resolve().parents[2]
Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class Echo:
    """A TCP server that echoes every byte and closes after the client's EOF."""

    def __init__(self) -> None:
        self.sides: list[Stream] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.sides.append((reader, writer))
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Echo]:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            self._server.close()
            for _, w in self.sides:
                w.close()
            await self._server.wait_closed()


@pytest.fixture
async def echo() -> AsyncIterator[Echo]:
    async with Echo().running() as server:
        yield server


@contextlib.asynccontextmanager
async def connection(port: int) -> AsyncIterator[Stream]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def roundtrip(stream: Stream, data: bytes = b"ping") -> bytes:
    reader, writer = stream
    writer.write(data)
    await writer.drain()
    return await asyncio.wait_for(reader.readexactly(len(data)), 10)


async def until(check: Callable[[], bool], timeout: float = 10) -> None:
    """Poll `check` (a socket's state has no event to wait on)."""
    async with asyncio.timeout(timeout):
        while True:
            if check():
                return
            await asyncio.sleep(0.01)


async def test_forwards_both_ways_passes_a_half_close_on_and_counts(echo: Echo) -> None:
    async with TcpProxy("127.0.0.1", echo.port) as proxy, connection(proxy.port) as (r, w):
        assert await roundtrip((r, w), b"x" * 200_000) == b"x" * 200_000
        assert (proxy.stats.accepted, proxy.live) == (1, 1)
        w.write(b"last")
        w.write_eof()  # the echo server answers, sees EOF, closes; the proxy passes both on
        assert await asyncio.wait_for(r.read(), 10) == b"last"
        await until(lambda: proxy.live == 0)


async def test_abort_all_resets_both_sides_mid_stream(echo: Echo) -> None:
    async with TcpProxy("127.0.0.1", echo.port) as proxy, connection(proxy.port) as stream:
        await roundtrip(stream)
        assert proxy.abort_all() == 1
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(stream[0].read(), 10)
        server_reader, _ = echo.sides[0]
        await until(lambda: server_reader.at_eof() or server_reader.exception() is not None)
        assert isinstance(server_reader.exception(), ConnectionResetError)
        assert (proxy.stats.aborted, proxy.live) == (1, 0)
        async with connection(proxy.port) as again:  # and it goes on accepting
            assert await roundtrip(again) == b"ping"


async def test_refuses_new_connections_until_accept_then_for_a_while(echo: Echo) -> None:
    async with TcpProxy("127.0.0.1", echo.port) as proxy:
        proxy.refuse()
        async with connection(proxy.port) as stream:
            with pytest.raises(ConnectionResetError):
                await roundtrip(stream)
        assert proxy.stats.refused == 1 and not echo.sides
        proxy.accept()
        async with connection(proxy.port) as stream:
            assert await roundtrip(stream) == b"ping"

        proxy.refuse_for(2.0)
        assert proxy.refusing
        await until(lambda: not proxy.refusing)
        async with connection(proxy.port) as stream:
            assert await roundtrip(stream) == b"ping"


async def test_an_outage_resets_live_connections_and_refuses_new_ones(echo: Echo) -> None:
    async with TcpProxy("127.0.0.1", echo.port) as proxy, connection(proxy.port) as live:
        await roundtrip(live)
        assert proxy.outage(60) == 1
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(live[0].read(), 10)
        async with connection(proxy.port) as fresh:
            with pytest.raises(ConnectionResetError):
                await roundtrip(fresh)
        assert (proxy.stats.aborted, proxy.stats.refused) == (1, 1)


async def test_pause_holds_bytes_back_without_closing(echo: Echo) -> None:
    async with TcpProxy("127.0.0.1", echo.port) as proxy, connection(proxy.port) as (r, w):
        proxy.pause()
        w.write(b"held")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(r.readexactly(4), 0.3)
        proxy.resume()
        assert await asyncio.wait_for(r.readexactly(4), 10) == b"held"
        assert proxy.stats.aborted == 0


async def test_an_unreachable_target_resets_the_client() -> None:
    async with Echo().running() as gone:
        port = gone.port
    async with TcpProxy("127.0.0.1", port) as proxy, connection(proxy.port) as stream:
        with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
            await roundtrip(stream)
        assert proxy.stats.failed == 1


async def test_from_a_shell_with_stdin_commands_and_sigusr1(echo: Echo) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.fakes.tcp_proxy", "--target", f"127.0.0.1:{echo.port}",
        cwd=ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    stdin, stdout = proc.stdin, proc.stdout

    async def command(line: str) -> str:
        stdin.write(line.encode() + b"\n")
        answer: bytes = await asyncio.wait_for(stdout.readline(), 10)
        return answer.decode().strip()

    try:
        banner = (await asyncio.wait_for(stdout.readline(), 20)).decode()
        found = re.fullmatch(r"listening on 127\.0\.0\.1:(\d+)\n", banner)
        assert found, banner
        port = int(found[1])
        async with connection(port) as stream:
            assert await roundtrip(stream) == b"ping"
            assert await command("abort") == "aborted 1"
        async with connection(port) as stream:
            await roundtrip(stream)
            proc.send_signal(signal.SIGUSR1)
            with pytest.raises(ConnectionResetError):
                await asyncio.wait_for(stream[0].read(), 10)
        assert await command("refuse 60") == "refusing for 60 s"
        assert await command("accept") == "accept"
        assert (await command("refuse soon")).startswith("error: expected seconds")
        assert (await command("explode")).startswith("error: commands are")
        stats = json.loads(await command("stats"))
        assert stats == {"accepted": 2, "aborted": 2, "refused": 0, "failed": 0, "live": 0}
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_carries_socket_io_and_cuts_it(hub: HubHarness) -> None:
    token = await hub.signup("ann")
    target = hub.url.rsplit(":", 1)
    async with TcpProxy("127.0.0.1", int(target[1])) as proxy:
        api = HubClient(f"http://127.0.0.1:{proxy.port}")
        gone = asyncio.Event()
        try:
            ide = await api.connect(
                {"token": token}, lambda sio: sio.on("disconnect", handler=gone.set)
            )
            assert ide.sio.transport() == "websocket"
            ok, reason = await ide.call("requestSessionLock", {"_id": "nope"}, {"_id": "nope"})
            assert ok is False and reason  # an answer came back through the proxy
            assert proxy.abort_all() == 1
            await asyncio.wait_for(gone.wait(), 10)
            proxy.refuse()
            with pytest.raises(socketio.exceptions.ConnectionError):
                await api.ide(token)
            proxy.accept()
            again = await api.ide(token)
            assert again.sio.connected
        finally:
            await api.close()


@pytest.mark.postgres
async def test_carries_postgresql_and_cuts_it() -> None:
    try:
        direct = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/test", timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        pytest.skip(f"PostgreSQL not reachable at 127.0.0.1:5432/test: {exc}")
    await direct.close()
    async with TcpProxy("127.0.0.1", 5432) as proxy:
        url = f"postgresql://postgres@127.0.0.1:{proxy.port}/test"
        conn = await asyncpg.connect(url, timeout=5)
        try:
            assert await conn.fetchval("SELECT 1") == 1
            assert proxy.outage(60) == 1
            with pytest.raises((OSError, asyncpg.PostgresConnectionError)):
                await conn.fetchval("SELECT 1")
            with pytest.raises((OSError, asyncpg.PostgresConnectionError)):
                await asyncpg.connect(url, timeout=5)
        finally:
            conn.terminate()
        proxy.accept()
        conn = await asyncpg.connect(url, timeout=5)
        assert await conn.fetchval("SELECT 2") == 2
        await conn.close()
