"""Live dashboard: a tiny stdlib HTTP server that re-reads the study from its storage on every request.

``/`` serves the report page (plotly.js from ``/plotly.min.js``, same server: no external requests);
the page polls ``/data.json`` every ``interval`` seconds and redraws when a trial finished. It only
reads the storage, so it can run beside ``autopeft run`` / workers, and the storage stays an ordinary
Optuna RDB storage that ``optuna-dashboard URL`` reads as well.
"""
from __future__ import annotations

import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

from .errors import AutoPEFTError, ConfigError
from .report import build_report, plotly_js, render_html

if TYPE_CHECKING:
    from .study import Study

logger = logging.getLogger(__name__)


class DashboardServer(ThreadingHTTPServer):
    """Serves one study's live report; ``url`` is where to point a browser."""

    daemon_threads = True

    def __init__(self, study: "Study", host: str = "127.0.0.1", port: int = 8050, interval: float = 5.0):
        self.study = study
        self.interval = interval
        self._lock = threading.Lock()  # one storage read at a time; requests arrive from several threads
        try:
            super().__init__((host, port), _Handler)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror})",
                              "choose another --port (0 picks a free one)") from None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"

    def page(self) -> bytes:
        with self._lock:
            data = build_report(self.study)
        return render_html(data, live={"url": "data.json", "interval": self.interval},
                           inline_plotly=False).encode("utf-8")

    def data(self) -> bytes:
        with self._lock:
            return build_report(self.study).to_json().encode("utf-8")


class _Handler(BaseHTTPRequestHandler):
    server: DashboardServer
    _plotly: bytes | None = None

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = self.path.split("?", 1)[0]
        try:
            if path in ("/", "/index.html"):
                self._send(self.server.page(), "text/html; charset=utf-8")
            elif path == "/data.json":
                self._send(self.server.data(), "application/json")
            elif path == "/plotly.min.js":
                if _Handler._plotly is None:
                    _Handler._plotly = plotly_js().encode("utf-8")
                self._send(_Handler._plotly, "text/javascript; charset=utf-8", cache=True)
            else:
                self.send_error(HTTPStatus.NOT_FOUND)
        except AutoPEFTError as err:  # e.g. the storage is gone: say so in the page, keep serving
            self._send(f"error: {err}".encode("utf-8"), "text/plain; charset=utf-8", HTTPStatus.SERVICE_UNAVAILABLE)

    def _send(self, body: bytes, kind: str, status: HTTPStatus = HTTPStatus.OK, cache: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=3600" if cache else "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:
        logger.debug("dashboard: " + format, *args)


def serve(study: "Study", host: str = "127.0.0.1", port: int = 8050, interval: float = 5.0) -> None:
    """Serve the live report until Ctrl-C. Checks the study exists first (one-line error otherwise)."""
    study.load()
    server = DashboardServer(study, host, port, interval)
    print(f"autopeft dashboard for '{study.cfg.name}' at {server.url} (Ctrl-C to stop)", flush=True)
    if host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("the dashboard listens on %s: anyone who can reach this machine can read the study", host)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
