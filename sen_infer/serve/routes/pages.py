"""The search page (/ and /static) and the API docs (/docs), all served from here: offline sites have no CDN.

None of these is in the OpenAPI schema, and none needs a key: the page asks for one, the API checks it.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from sen_infer.serve.origin import PAGE_CSP

router = APIRouter(include_in_schema=False)
STATIC = Path(__file__).parent.parent / "static"

CSP = PAGE_CSP  # every other HTML answer gets it from the SameOrigin middleware too (/static/index.html)
CDN = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5"  # only where fastapi-offline is missing


class RevalidatedFiles(StaticFiles):
    """The page's script and style, revalidated on every load (ETag: a 304 costs nothing), so a browser
    never pairs a new index.html with an old app.js after an upgrade."""

    def file_response(self, *args, **kwargs):
        """Starlette's file response, marked no-cache."""
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "no-cache"
        return response


@lru_cache(maxsize=1)
def swagger_files() -> Path | None:
    """The fastapi-offline package's copy of swagger-ui 5 (OpenAPI 3.1, which FastAPI writes; swagger-ui 4
    cannot render it), or None when that package is not installed."""
    try:
        import fastapi_offline
    except ImportError:
        return None
    files = Path(fastapi_offline.__file__).parent / "static"
    return files if (files / "swagger-ui-bundle.js").is_file() else None


def mount_files(app: FastAPI) -> None:
    """Mounts the page's files at /static and swagger-ui's at /docs-static (a router cannot carry mounts).

    Args:
        app: the FastAPI app.
    """
    app.mount("/static", RevalidatedFiles(directory=STATIC), name="static")
    if swagger_files() is not None:
        app.mount("/docs-static", StaticFiles(directory=swagger_files()), name="docs-static")


# The operator's search page: one HTML file, one script, one stylesheet.
@router.get("/")
def page():
    """The page, never cached stale, under a Content-Security-Policy that lets it load nothing foreign."""
    return FileResponse(STATIC / "index.html", media_type="text/html",
                        headers={"Cache-Control": "no-cache", "Content-Security-Policy": CSP})


# Swagger UI over /openapi.json, from /docs-static; from the CDN where the browser has internet access
# and fastapi-offline is not installed.
@router.get("/docs")
def docs():
    """The Swagger UI page (FastAPI's own, pointed at the files served here)."""
    base = "/docs-static" if swagger_files() is not None else CDN
    page = get_swagger_ui_html(openapi_url="/openapi.json", title="SEN person search API",
                               swagger_js_url=f"{base}/swagger-ui-bundle.js", swagger_css_url=f"{base}/swagger-ui.css",
                               swagger_favicon_url="/static/favicon.svg")
    page.headers["Content-Security-Policy"] = "frame-ancestors 'none'"  # its inline script stays allowed
    return page
