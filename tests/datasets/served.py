"""A loopback HTTP server for the download tests: serves a folder from a thread, counts the
requests, and can answer with an HTTP error or cut a download short. No test touches the
network beyond 127.0.0.1."""

from __future__ import annotations

import functools
import http.server
import socket
import threading
from pathlib import Path


class Server:
    """``Server(folder)`` serves ``folder`` at ``url`` until ``close()``; ``requests`` lists the
    paths asked for; a path in ``truncated`` is sent with its full Content-Length but only half
    its bytes."""

    def __init__(self, folder: Path):
        self.requests: list[str] = []
        self.truncated: set[str] = set()
        handler = functools.partial(_Handler, self, directory=str(folder))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


class _Handler(http.server.SimpleHTTPRequestHandler):
    def __init__(self, server: Server, *args, **kwargs):
        self.owner = server
        super().__init__(*args, **kwargs)

    def do_GET(self):
        self.owner.requests.append(self.path)
        if self.path.lstrip("/") in self.owner.truncated:
            body = Path(self.directory, self.path.lstrip("/")).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()

    def log_message(self, *args):  # quiet
        pass


def closed_port_url(path: str = "file.bin") -> str:
    """A loopback URL nothing listens on: a download from it fails as offline ones do."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/{path}"
