"""A real HTTP server on 127.0.0.1 for the collection tests: good images, slow and dripping
responses, huge bodies, wrong types, redirects (into private ranges, in loops, without end),
429/503 with Retry-After, X-Robots-Tag opt-outs. Started in a thread per test module."""

import base64
import contextlib
import io
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image as PILImage

from tests import factories


def jpeg_with_exif(seed: int = 1) -> bytes:
    picture = PILImage.open(io.BytesIO(factories.image_bytes(seed=seed, size=(80, 60))))
    exif = PILImage.Exif()
    exif[0x010F] = "SecretCam"  # Make
    exif[0x0131] = "gps-leaking-software"  # Software
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", exif=exif.tobytes())
    return buffer.getvalue()


class ImageServer:
    """Routes by path; ``hits`` counts requests per path; ``images`` maps /img/<n>.jpg bytes."""

    def __init__(self) -> None:
        self.hits: Counter = Counter()
        self.user_agents: list[str] = []
        self.authorizations: dict[str, list[str]] = {}  # path -> Authorization headers seen
        # /held/ requests: how many are being answered now, and the most there ever were.
        self.held_now = self.held_most = 0
        self.held_lock = threading.Lock()
        self.delay = 0.0  # seconds every /img/ response waits (kill tests slow the run down)
        self.flaky_ok = False  # /flaky answers 500 until a test sets this
        self.exif_jpeg = jpeg_with_exif()
        self.png = factories.image_bytes(fmt="PNG", seed=2, size=(70, 50))
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                server.hits[self.path] += 1
                server.user_agents.append(self.headers.get("User-Agent", ""))
                server.authorizations.setdefault(self.path, []).append(
                    self.headers.get("Authorization", "")
                )
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    server.route(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # --- routes ---------------------------------------------------------------------------------

    def route(self, h: BaseHTTPRequestHandler) -> None:
        path = h.path.split("?", 1)[0]
        if path.startswith("/img/"):
            if self.delay:
                time.sleep(self.delay)
            seed = int(path.rsplit("/", 1)[-1].split(".")[0])
            return _send(h, 200, factories.image_bytes(seed=10_000 + seed, size=(64, 48)))
        if path.startswith("/held/"):  # answered after a while, counting those held at once
            with self.held_lock:
                self.held_now += 1
                self.held_most = max(self.held_most, self.held_now)
            time.sleep(0.2)
            with self.held_lock:
                self.held_now -= 1
            return _send(h, 200, self.png, "image/png")
        if path == "/exif.jpg":
            return _send(h, 200, self.exif_jpeg)
        if path == "/same.jpg":  # the same bytes as /exif.jpg under another URL
            return _send(h, 200, self.exif_jpeg)
        if path == "/good.png":
            return _send(h, 200, self.png, "image/png")
        if path == "/octet":
            return _send(h, 200, self.png, "application/octet-stream")
        if path == "/page.html":
            return _send(h, 200, b"<html><body>not an image</body></html>", "text/html")
        if path == "/fake.jpg":
            return _send(h, 200, b"<html>lying about its type</html>", "image/jpeg")
        if path == "/corrupt.jpg":  # JPEG magic, then garbage: the ingest checks refuse it
            return _send(h, 200, b"\xff\xd8\xff\xe0" + b"\x00" * 400, "image/jpeg")
        if path == "/huge-declared":
            h.send_response(200)
            h.send_header("Content-Type", "image/jpeg")
            h.send_header("Content-Length", str(10**10))
            h.end_headers()
            return None
        if path == "/huge-streamed":  # no Content-Length: the cap must hold while streaming
            h.send_response(200)
            h.send_header("Content-Type", "image/jpeg")
            h.send_header("Connection", "close")
            h.end_headers()
            h.wfile.write(b"\xff\xd8\xff\xe0")
            for _ in range(64):
                h.wfile.write(b"\x00" * 65536)
            return None
        if path == "/slow":  # headers only after the read timeout
            time.sleep(5)
            return _send(h, 200, self.png, "image/png")
        if path == "/drip":  # each byte in time, the whole far too slow
            h.send_response(200)
            h.send_header("Content-Type", "image/png")
            h.send_header("Content-Length", str(len(self.png)))
            h.end_headers()
            for byte in self.png:
                h.wfile.write(bytes([byte]))
                h.wfile.flush()
                time.sleep(0.2)
            return None
        if path == "/to-private":
            return _redirect(h, "http://10.1.2.3/secret.jpg")
        if path == "/to-metadata":
            return _redirect(h, "http://169.254.169.254/latest/meta-data/")
        if path == "/to-good":
            return _redirect(h, "/good.png")
        if path == "/loop-a":
            return _redirect(h, "/loop-b")
        if path == "/loop-b":
            return _redirect(h, "/loop-a")
        if path.startswith("/chain/"):
            n = int(path.rsplit("/", 1)[-1])
            return _redirect(h, f"/chain/{n + 1}")
        if path == "/busy-once":  # 429 the first time, the image after
            if self.hits[h.path] == 1:
                return _send(h, 429, b"slow down", "text/plain", {"Retry-After": "0"})
            return _send(h, 200, factories.image_bytes(fmt="PNG", seed=88), "image/png")
        if path == "/unavailable":  # 503 every time
            return _send(h, 503, b"down", "text/plain", {"Retry-After": "0"})
        if path == "/flaky.png":
            if self.flaky_ok:
                return _send(h, 200, factories.image_bytes(fmt="PNG", seed=77), "image/png")
            return _send(h, 500, b"broken today", "text/plain")
        if path == "/private.jpg":  # only with Basic alice / s3cr:et (URL: alice:s3cr%3Aet@)
            if h.headers.get("Authorization") != PRIVATE_AUTHORIZATION:
                return _send(h, 401, b"who are you", "text/plain")
            return _send(h, 200, self.png, "image/png")
        if path == "/to-private-with-credentials":  # credentials in the Location only
            return _redirect(h, f"http://alice:s3cr%3Aet@127.0.0.1:{self.port}/private.jpg")
        if path == "/to-private-on-another-host":  # the same server under another name
            return _redirect(h, f"http://localhost:{self.port}/private.jpg")
        if path == "/credentials-loop":
            return _redirect(h, f"http://carol:hunter2@127.0.0.1:{self.port}/credentials-loop")
        if path == "/missing.jpg":
            return _send(h, 404, b"not found", "text/plain")
        if path == "/noai.png":
            return _send(h, 200, self.png, "image/png", {"X-Robots-Tag": "noai"})
        if path == "/otherbot.png":
            return _send(h, 200, self.png, "image/png", {"X-Robots-Tag": "otherbot: noimageai"})
        return _send(h, 404, b"no route", "text/plain")


PRIVATE_AUTHORIZATION = "Basic " + base64.b64encode(b"alice:s3cr:et").decode()


def _send(h, status: int, body: bytes, content_type: str = "image/jpeg", headers=None) -> None:
    h.send_response(status)
    h.send_header("Content-Type", content_type)
    h.send_header("Content-Length", str(len(body)))
    for name, value in (headers or {}).items():
        h.send_header(name, value)
    h.end_headers()
    h.wfile.write(body)


def _redirect(h, location: str) -> None:
    h.send_response(302)
    h.send_header("Location", location)
    h.send_header("Content-Length", "0")
    h.end_headers()


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
