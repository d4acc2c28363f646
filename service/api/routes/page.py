"""The try-it web page: ``GET /`` and its two static files, shipped inside the package.

Plain HTML, CSS and JavaScript with no build step and no CDN, so the page works on an
air-gapped host. A strict Content-Security-Policy allows only same-origin scripts, styles
and requests (images also from ``blob:``/``data:``, for the local thumbnails), so neither a
filename nor an answer of the service can run as script. Served through ordinary routes,
the page counts in the request metrics like any other client.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse
from starlette.exceptions import HTTPException

from service.api.deps import SettingsDep

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
# Only the files shipped with the package are served: a name is a key, never a path.
ASSETS = {"app.js": "text/javascript", "chart.js": "text/javascript", "style.css": "text/css"}

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' blob: data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Revalidate each load (ETag), so an upgraded service never runs a stale script.
    "Cache-Control": "no-cache",
}


async def page_enabled(settings: SettingsDep) -> None:
    """The page is off when ``OCLIP_WEB_PAGE=false``: then ``/`` is an ordinary 404."""
    if not settings.web_page:
        raise HTTPException(404, "Not Found")


router = APIRouter(tags=["page"], include_in_schema=False, dependencies=[Depends(page_enabled)])


@router.get("/")
async def index() -> FileResponse:
    """The page itself: pick or drop images, see each task's distribution as a chart."""
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers=HEADERS)


@router.get("/static/{name}")
async def asset(name: str) -> FileResponse:
    """The page's script and style sheet."""
    media_type = ASSETS.get(name)
    if media_type is None:
        raise HTTPException(404, "Not Found")
    return FileResponse(STATIC_DIR / name, media_type=media_type, headers=HEADERS)
