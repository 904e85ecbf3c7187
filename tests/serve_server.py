"""`rnaret serve` behind a real uvicorn on 127.0.0.1, for the serve tests.

The listening socket is bound (port 0: the kernel picks a free port) and listening before the
server starts, and handed to uvicorn, so there is no free-port race, and a first request can be
sent at once: it waits in the socket's backlog until uvicorn accepts it (after the workers have
loaded the models), so nothing polls for start-up. When the server process or thread ends, the
last copy of the socket is closed and a waiting request fails at once instead of hanging.

- ``ThreadServer(app)``: uvicorn in a thread of the test process (the tests can reach the app's
  job manager on the server's event loop through ``call``);
- ``start_command(args)``: ``python -m rnaret serve --fd N ARGS`` as a child process.
"""
from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading

import httpx

START_TIMEOUT_S = 600  # hang guard only: start-up is waited for by a request in the backlog
REQUEST_TIMEOUT_S = 600


def listening_socket() -> socket.socket:
    """A TCP socket bound to 127.0.0.1 on a port the kernel picked, already listening."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


def wait_until_up(base: str) -> dict:
    """GET /api/health once; it is answered when the server has started (the connection waits
    in the backlog until then). Returns the health answer; raises when the server died."""
    answer = httpx.get(f"{base}/api/health", timeout=START_TIMEOUT_S)
    answer.raise_for_status()
    return answer.json()


class ThreadServer:
    """uvicorn serving ``app`` on a bound loopback socket, in a thread of this process."""

    def __init__(self, app):
        import uvicorn

        self.app = app
        self.sock = listening_socket()
        self.base = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on",
                                                    timeout_graceful_shutdown=5))
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="uvicorn", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.server.serve(sockets=[self.sock]))
        finally:
            self.sock.close()  # a request still waiting in the backlog fails at once

    def __enter__(self) -> "ThreadServer":
        self.thread.start()
        wait_until_up(self.base)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(START_TIMEOUT_S)
        assert not self.thread.is_alive(), "uvicorn did not stop"
        self.loop.close()

    def client(self) -> httpx.Client:
        """An HTTP client for this server (relative URLs)."""
        return httpx.Client(base_url=self.base, timeout=REQUEST_TIMEOUT_S)

    def call(self, function, *args):
        """Run ``function(*args)`` on the server's event loop (where the job manager lives) and
        return its result; a coroutine function is awaited there."""
        async def run():
            result = function(*args)
            if asyncio.iscoroutine(result):
                result = await result
            return result

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(REQUEST_TIMEOUT_S)


def start_command(args, *, stdout, env=None) -> tuple[subprocess.Popen, str]:
    """Start ``python -m rnaret serve --fd N *args`` on a bound loopback socket -> (process, base
    URL). The caller waits for it with ``wait_until_up`` and stops it."""
    sock = listening_socket()
    try:
        process = subprocess.Popen([sys.executable, "-m", "rnaret", "serve", "--fd", str(sock.fileno()),
                                    *map(str, args)], pass_fds=[sock.fileno()], stdout=stdout,
                                   stderr=subprocess.STDOUT, env=env)
        return process, f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()  # the server's copy is the only one left
