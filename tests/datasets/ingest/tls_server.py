"""A real HTTPS server on 127.0.0.1 for the fetcher's TLS tests, its certificate issued by a
throwaway CA (trustme) for the names a test chooses. It records the server name (SNI) and the
Host header of every request."""

import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import trustme


class TlsImageServer:
    """Serves ``body`` as image/png on every path over TLS, with a certificate for ``names``
    issued by ``ca`` (a trustme.CA; its PEM is what a client must trust)."""

    def __init__(self, *, ca: trustme.CA, names: list[str], body: bytes) -> None:
        self.server_names: list[str | None] = []
        self.hosts: list[str] = []
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(*names).configure_cert(context)
        context.sni_callback = lambda _sock, name, _ctx: self.server_names.append(name)
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                server.hosts.append(self.headers.get("Host", ""))
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self):
                sock, address = self.socket.accept()
                return context.wrap_socket(sock, server_side=True), address

            def handle_error(self, request, client_address) -> None:
                pass  # a client that refuses our certificate ends the handshake

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
