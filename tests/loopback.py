"""A loopback HTTP server for the download and archive tests: files served from memory on
127.0.0.1 (port chosen by the OS, so no free-port race), with Range support and scripted
misbehaviour. Threads end when the test leaves the ``with`` block."""
from __future__ import annotations

import http.server
import re
import threading


class Server:
    """A threaded HTTP server on 127.0.0.1 with Range support and scripted misbehaviour.

    Misbehaviour applies to ``payload`` (default: the first file) only:

    - ``cut_after``/``cuts``: the first ``cuts`` GETs of the payload close the connection after
      that many bytes (Content-Length still says all);
    - ``statuses``: the next GETs of the payload are answered with these statuses, one each
      (e.g. ``[503, 503]``), with ``retry_after`` as a Retry-After header when set;
    - ``stall_after``/``stalls``: the first ``stalls`` GETs send that many bytes and then go
      silent until the test ends (``release`` is set at shutdown), as a stalled connection does;
    - ``wrong_ranges``: the next ``wrong_ranges`` resumed GETs answer 206 with a Content-Range
      that starts 1,000 bytes before the byte asked for;
    - ``ignore_range``: every GET is answered 200 with the whole file;
    - ``/hop/N/NAME`` redirects to ``/hop/N-1/NAME``, ``/hop/0/NAME`` to ``/NAME``;
      ``/loop/NAME`` redirects to itself, ``/elsewhere/NAME`` to a file:// URL.
    ``requests`` records (path, Range header) of every GET.
    """

    def __init__(self, files: dict[str, bytes], payload: str | None = None):
        self.files = files
        # the file the scripted misbehaviour applies to (default: the first one)
        self.payload = payload if payload is not None else next(iter(files))
        self.cut_after: int | None = None
        self.cuts = 0
        self.statuses: list[int] = []
        self.retry_after: str | None = None
        self.stall_after: int | None = None
        self.stalls = 0
        self.wrong_ranges = 0
        self.ignore_range = False
        self.release = threading.Event()
        self.requests: list[tuple[str, str | None]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def _redirect(self, location: str):
                self.send_response(302)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self):
                path = self.path
                range_header = self.headers.get("Range")
                with outer.lock:
                    outer.requests.append((path, range_header))
                hop = re.fullmatch(r"/hop/(\d+)/(.+)", path)
                if hop:
                    n, name = int(hop.group(1)), hop.group(2)
                    return self._redirect(f"/hop/{n - 1}/{name}" if n else f"/{name}")
                if path.startswith("/loop/"):
                    return self._redirect(path)
                if path.startswith("/elsewhere/"):
                    return self._redirect("file:///etc/passwd")
                name = path.lstrip("/")
                if name not in outer.files:
                    self.send_error(404)
                    return
                data = outer.files[name]
                payload = name == outer.payload
                with outer.lock:
                    status = outer.statuses.pop(0) if payload and outer.statuses else None
                    stall = payload and outer.stalls > 0
                    if stall:
                        outer.stalls -= 1
                    cut = payload and outer.cut_after is not None and outer.cuts > 0
                    if cut:
                        outer.cuts -= 1
                    wrong = payload and range_header is not None and outer.wrong_ranges > 0
                    if wrong:
                        outer.wrong_ranges -= 1
                if status is not None:
                    self.send_response(status)
                    if outer.retry_after is not None:
                        self.send_header("Retry-After", outer.retry_after)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                start = 0
                match = re.match(r"bytes=(\d+)-", range_header or "")
                if match and not outer.ignore_range:
                    start = int(match.group(1))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    if wrong:
                        start = max(0, start - 1000)
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                body = data[start:]
                if stall:
                    self.wfile.write(body[: outer.stall_after])
                    self.wfile.flush()
                    outer.release.wait()  # silent until the test ends
                    self.close_connection = True
                    return
                if cut:
                    self.wfile.write(body[: outer.cut_after])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def payload_ranges(self) -> list[str | None]:
        """Range headers of the GETs of the payload file, in order."""
        return [r for path, r in self.requests if path == f"/{self.payload}"]

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
