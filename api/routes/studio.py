"""Newsroom studio: the web UI for writers and editors, served by the API itself.

Pages are static HTML (a shared shell around one fragment per page) and plain JavaScript that
calls the public JSON API with the key the user typed, so the studio can do exactly what that
key's role may do, and nothing is rendered from data on the server. Everything is local: no
CDN, no build step. A strict Content-Security-Policy (same-origin scripts, no inline code)
keeps an article's text from ever running as script in an editor's browser.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from string import Template

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, RedirectResponse

from core.errors import NotFound

STUDIO_DIR = Path(__file__).resolve().parents[1] / "studio"
ASSETS_DIR = STUDIO_DIR / "assets"

# path segment -> (title, fragment and script name)
PAGES = {
    "": ("Studio", "home"),
    "draft": ("Draft studio", "draft"),
    "feed": ("Feed preview", "feed"),
    "article": ("Article view", "article"),
    "quality": ("Quality dashboard", "quality"),
    "campaigns": ("Campaigns", "campaigns"),
    "experiments": ("Experiments", "experiments"),
}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


@cache
def render_page(path: str) -> str:
    title, name = PAGES[path]
    shell = Template((STUDIO_DIR / "shell.html").read_text(encoding="utf-8"))
    content = (STUDIO_DIR / "pages" / f"{name}.html").read_text(encoding="utf-8")
    return shell.substitute(title=title, page=name, content=content)


@router.get("/studio")
def studio_root() -> RedirectResponse:
    return RedirectResponse("/studio/", status_code=308)


@router.get("/studio/", response_class=HTMLResponse)
def studio_home() -> HTMLResponse:
    return HTMLResponse(render_page(""), headers=SECURITY_HEADERS)


@router.get("/studio/{page}", response_class=HTMLResponse)
def studio_page(page: str) -> HTMLResponse:
    if page not in PAGES or not page:
        raise NotFound(f"no studio page {page!r}; pages: {', '.join(p for p in PAGES if p)}")
    return HTMLResponse(render_page(page), headers=SECURITY_HEADERS)
