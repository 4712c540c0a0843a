"""The web layer of ``unseg serve``: a Starlette app over a :class:`~unseg.serve.workspace.Workspace`.

Routes (JSON unless noted; errors are ``{"error": message}`` with a 4xx status):

    GET  /                                  the page (static/index.html, app.js, style.css)
    GET  /api/info                          generator choices, default budget, limits
    POST /api/upload                        raw image bytes, header X-Filename -> upload
    POST /api/uploads/<id>/mask             raw mask bytes (uploaded or painted) -> mask id
    GET  /api/uploads/<id>/preview.png      the upright 8-bit view to mark on
    POST /api/protect                       the request of Workspace.protect -> results
    GET  /api/jobs/<job>/<file>             a result: PNG, noise / zoom view, manifest, zip

Bodies are read in chunks and refused past the upload limit. Every page asset is served from
the package (nothing loads from elsewhere; the Content-Security-Policy says so to the browser).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from urllib.parse import unquote

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from unseg.serve.workspace import ServeError, Workspace, display_name

STATIC = Path(__file__).parent / "static"
STATIC_FILES = {"index.html": "text/html", "app.js": "text/javascript", "style.css": "text/css"}
MAX_REQUEST_JSON = 1024 * 1024
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; "
                               "script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}
log = logging.getLogger("unseg.serve")


class SecurityHeaders:
    """ASGI middleware adding :data:`SECURITY_HEADERS` to every response."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for key, value in SECURITY_HEADERS.items():
                    headers[key] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def read_body(request: Request, limit: int, what: str) -> bytes:
    """The request body, refused (413) as soon as it passes ``limit`` bytes."""
    message = f"{what} is larger than the upload limit of {limit / 2**20:g} MiB"
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise ServeError(message, status=413)
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise ServeError(message, status=413)
    return bytes(data)


def build_app(workspace: Workspace) -> Starlette:
    """The Starlette app serving ``workspace`` (no network or model access of its own)."""
    limit = workspace.limits.max_upload_bytes

    def filename(request: Request) -> str:
        return display_name(unquote(request.headers.get("x-filename", "")) or "upload")

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC_FILES:
            raise ServeError("not found", status=404)
        return FileResponse(STATIC / name, media_type=STATIC_FILES[name])

    async def info(request: Request) -> Response:
        return JSONResponse(workspace.info())

    async def upload(request: Request) -> Response:
        name = filename(request)
        data = await read_body(request, limit, name)
        added = await run_in_threadpool(workspace.add_upload, name, data)
        return JSONResponse(added.public())

    async def mask(request: Request) -> Response:
        name = filename(request)
        data = await read_body(request, limit, name)
        added = await run_in_threadpool(workspace.add_mask, request.path_params["upload_id"], name, data)
        return JSONResponse(added)

    async def preview(request: Request) -> Response:
        return FileResponse(workspace.preview(request.path_params["upload_id"]), media_type="image/png")

    async def protect(request: Request) -> Response:
        body = await read_body(request, MAX_REQUEST_JSON, "the request")
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ServeError("the request is not valid JSON") from None
        return JSONResponse(await run_in_threadpool(workspace.protect, payload))

    async def job_file(request: Request) -> Response:
        name = request.path_params["name"]
        path = workspace.job_file(request.path_params["job_id"], name)
        attachment = name.endswith(".zip") or not (".noise." in name or ".zoom." in name or name.endswith(".jsonl"))
        return FileResponse(path, filename=name if attachment else None,
                            content_disposition_type="attachment" if attachment else "inline")

    async def serve_error(request: Request, error: ServeError) -> Response:
        return JSONResponse({"error": str(error)}, status_code=error.status)

    async def unexpected(request: Request, error: Exception) -> Response:
        log.exception("unexpected error on %s", request.url.path)
        return JSONResponse({"error": f"internal error ({type(error).__name__}); the server keeps running"},
                            status_code=500)

    routes = [
        Route("/", index),
        Route("/static/{name}", static),
        Route("/api/info", info),
        Route("/api/upload", upload, methods=["POST"]),
        Route("/api/uploads/{upload_id}/mask", mask, methods=["POST"]),
        Route("/api/uploads/{upload_id}/preview.png", preview),
        Route("/api/protect", protect, methods=["POST"]),
        Route("/api/jobs/{job_id}/{name}", job_file),
    ]
    return Starlette(routes=routes, middleware=[Middleware(SecurityHeaders)],
                     exception_handlers={ServeError: serve_error, Exception: unexpected})
