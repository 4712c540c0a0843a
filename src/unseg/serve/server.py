"""Running the app: bind, announce, serve until Ctrl+C / SIGTERM, delete the temporary folder."""

from __future__ import annotations

import signal
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path

from unseg.serve.protectors import ProtectorPool
from unseg.serve.workspace import ServeLimits, Workspace


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: any free one); raises OSError."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)  # connections queue from now on, so the announced address answers at once
    return sock


def run_server(pool: ProtectorPool, sock: socket.socket, limits: ServeLimits = ServeLimits(),
               announce: Callable[[str], None] = print) -> None:
    """Serve the page on ``sock`` from a fresh temporary folder until interrupted.

    ``announce`` gets the folder and the address once they exist. SIGTERM and Ctrl+C end the
    server gracefully (uvicorn re-raises them after its shutdown: here they become a normal
    return), and the temporary folder with every upload and result is deleted.
    """
    import uvicorn

    from unseg.serve.app import build_app

    previous = signal.signal(signal.SIGTERM, _exit_quietly)
    try:
        with tempfile.TemporaryDirectory(prefix="unseg-serve-") as folder:
            workspace = Workspace(Path(folder), pool.get, pool.choices(), limits)
            config = uvicorn.Config(build_app(workspace), log_level="warning", timeout_graceful_shutdown=2)
            host, port = sock.getsockname()[:2]
            announce(f"temporary folder: {folder} ({limits.describe()})")
            announce(f"unseg serve: http://{f'[{host}]' if ':' in host else host}:{port}/  (Ctrl+C to stop)")
            try:
                uvicorn.Server(config).run(sockets=[sock])
            except (KeyboardInterrupt, SystemExit):
                pass
    finally:
        signal.signal(signal.SIGTERM, previous)


def _exit_quietly(signum, frame) -> None:
    raise SystemExit(0)
