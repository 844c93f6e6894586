"""The dashboard: a page for people at GET /, its assets under /static/.

Everything the page needs ships in the package (services/frontend/dashboard/, package data),
so it works on a machine with no network: no CDN, no web font, no build step. The page reads
the public JSON routes (/publications, /entities, /status) of the same origin.
"""

from __future__ import annotations

from pathlib import Path

import falcon

DASHBOARD_DIR = Path(__file__).resolve().parent / "dashboard"

# Falcon takes static content types from the system's mime.types, which differs between
# machines (text/javascript or application/javascript) and names no charset: pin ours.
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}

# The page only ever loads its own assets and data; telling the browser so turns an
# accidental CDN link into a visible error rather than a silent dependency on the network,
# and keeps a script smuggled in through an article's text from running.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)


class SecurityHeaders:
    """Falcon middleware: headers every answer carries, whatever route or error made it.

    `X-Content-Type-Options: nosniff` on all of them, so a browser never reads a JSON
    answer that echoes article text, or a static file, as HTML or script; the policy above
    on every HTML answer (the page at /, and the same page under /static/).
    """

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: object, req_succeeded: bool
    ) -> None:
        resp.set_header("X-Content-Type-Options", "nosniff")
        if (resp.content_type or "").split(";")[0].strip().lower() == "text/html":
            resp.set_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)


class Dashboard:
    """GET /: the dashboard's page (read once: it is package data and does not change)."""

    def __init__(self, directory: Path = DASHBOARD_DIR) -> None:
        self._page = (directory / "index.html").read_bytes()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        # Its Content-Security-Policy comes from SecurityHeaders, as every HTML answer's.
        resp.content_type = MEDIA_TYPES[".html"]
        # Revalidate each time, so a new release's page is seen at once.
        resp.cache_control = ["no-cache"]
        resp.data = self._page

    # Falcon drops the body of a HEAD answer and keeps its Content-Length.
    on_head = on_get


def add_dashboard(app: falcon.App, directory: Path = DASHBOARD_DIR) -> None:
    """Serve the dashboard at / and its folder at /static/ (the app must have the
    SecurityHeaders middleware: it gives the page its Content-Security-Policy)."""
    app.add_route("/", Dashboard(directory))
    app.add_static_route("/static/", directory)
    app.resp_options.static_media_types.update(MEDIA_TYPES)
