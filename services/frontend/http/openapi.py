"""GET /openapi.json: the OpenAPI 3.1 document of the frontend, built with apispec from the app.

Whatever the code already says is read from it, so the document cannot drift from it:

- the operations are the app's routes and methods, read from Falcon's router: a route with
  no entry in `_operations` (or an entry with no route) stops the app from being built;
- request and response schemas are msgspec's JSON Schema of the very structs that validate
  requests and shape responses (schemas.py, common/store.py, common/control.py);
- summaries are the responders' docstrings; security follows each resource's `auth` (auth.py).

Only what the code cannot say is written here: which body and parameters each operation
takes and which statuses it answers.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Annotated, Any

import falcon
import falcon.inspect
import msgspec
from apispec import APISpec
from msgspec import Meta

from common.config import Settings
from common.control import MeshSummary
from common.store import EntityPage
from services.frontend.http.auth import KEYLESS_METHODS
from services.frontend.http.schemas import (
    Accepted,
    ArticleIn,
    EnqueueIn,
    ErrorBody,
    HealthBody,
    PublicationList,
    Queued,
    Readiness,
)

REF = "#/components/schemas/{name}"

# Routes left out of the document on purpose, and why. Falcon's router holds "/"; the assets
# are a static route (app.add_static_route), listed so a test can tell them from an oversight.
UNDOCUMENTED = {
    "/": "the dashboard's page: HTML for people, not part of the API",
    "/static/": "the dashboard's scripts and stylesheets",
}

# Every struct a body is read into or written from; their schemas are the components, and
# operations name them (apispec turns a name into a $ref).
BODIES = (
    EnqueueIn,
    Accepted,
    Queued,
    PublicationList,
    EntityPage,
    HealthBody,
    Readiness,
    MeshSummary,
    ErrorBody,
)

SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    "accessToken": {"type": "apiKey", "in": "header", "name": "access_token"},
}
# A resource's `auth` (auth.py) -> the schemes ApiKeyAuth accepts for it, any one of them.
AUTH_SCHEMES = {"api_key": ("bearer", "apiKey"), "access_token": ("accessToken",)}

ERRORS = {
    400: "Malformed JSON, empty body, bad encoding, or a bad query parameter.",
    401: "No API key.",
    403: "Wrong API key.",
    404: "No such resource.",
    413: "Body over the size limit.",
    415: "Not JSON/NDJSON in UTF-8.",
    422: "A field or item is invalid; the description names it.",
    503: "Writes are stopped or draining, the backlog is full, or the journal is busy: "
    "retry after Retry-After seconds.",
}

# "GET /path: " opening a docstring: the document says that already.
ROUTE_PREFIX = re.compile(r"^[A-Z]+ /\S*: ")


class DocumentMismatch(RuntimeError):
    """The app's routes and the operations documented here differ."""


def _operations(articles_body: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """What each (path, method) takes and answers, beyond its summary and security."""
    limit = {"type": "integer", "minimum": 1, "maximum": 1000}
    page_params = [
        _query("limit", {**limit, "default": 20}, "Entities per page."),
        _query("cursor", {"type": "string"}, "next_cursor of the previous page."),
        _query("label", {"type": "string"}, "Only entities of this label, e.g. PERSON."),
    ]
    ndjson = {"type": "string", "description": "One article object per line."}
    return {
        ("/articles", "POST"): {
            "requestBody": _body(
                {"application/json": articles_body, "application/x-ndjson": ndjson}
            ),
            "responses": {
                202: _json("Journaled: each will be counted once.", Accepted),
                **_errors(400, 413, 415, 422, 503),
            },
        },
        ("/post/enqueue", "POST"): {
            "requestBody": _body({"application/json": EnqueueIn}),
            "responses": {201: _json("Journaled.", Queued), **_errors(400, 413, 415, 422, 503)},
        },
        ("/publications", "GET"): {
            "parameters": [_query("limit", {**limit, "default": 100}, "At most this many.")],
            "responses": {200: _json("Publications.", PublicationList), **_errors(400)},
        },
        ("/publications/{name}/entities", "GET"): {
            "parameters": [
                {"name": "name", "in": "path", "schema": {"type": "string", "minLength": 1}},
                *page_params,
            ],
            "responses": {200: _json("A page.", EntityPage), **_errors(400, 404)},
        },
        ("/entities", "GET"): {
            "parameters": [
                _query("publication", {"type": "string"}, "Publication name.", required=True),
                *page_params,
            ],
            "responses": {200: _json("A page.", EntityPage), **_errors(400, 404)},
        },
        ("/health", "GET"): {"responses": {200: _json("The process is up.", HealthBody)}},
        ("/ready", "GET"): {
            "responses": {
                200: _json("Ready to accept writes.", Readiness),
                503: _json("Not ready; each failed check says why.", Readiness),
            }
        },
        ("/status", "GET"): {
            "responses": {200: _json("Status.", MeshSummary), **_errors(503)},
        },
        ("/metrics", "GET"): {
            "responses": {
                200: {
                    "description": "Prometheus text format.",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            }
        },
        ("/openapi.json", "GET"): {
            "responses": {200: _json("This document.", {"type": "object"})},
        },
    }


def openapi_document(app: falcon.App, settings: Settings) -> dict[str, Any]:
    """The document of every route of `app` but those in UNDOCUMENTED.

    Raises DocumentMismatch if a route has no entry in `_operations` or an entry no route.
    """
    spec = APISpec(
        title="ingest-mesh",
        version="1",
        openapi_version="3.1.0",
        info={"description": "News articles in; named-entity counts per publication out."},
    )
    # POST /articles takes one article or a batch of them, bounded as Intake bounds it.
    batch = Annotated[list[ArticleIn], Meta(min_length=1, max_length=settings.max_batch)]
    (articles_body, *_), components = msgspec.json.schema_components(
        [ArticleIn | batch, *BODIES], ref_template=REF
    )
    for name, component in components.items():
        spec.components.schema(name, component)
    for name, scheme in SECURITY_SCHEMES.items():
        spec.components.security_scheme(name, scheme)

    operations = _operations(articles_body)
    undocumented: list[str] = []
    for route in falcon.inspect.inspect_routes(app):
        if route.path in UNDOCUMENTED:
            continue
        resource, responders, _, _ = app._router.find(route.path)
        documented: dict[str, Any] = {}
        for method in (m.method for m in route.methods if not m.internal):  # not Falcon's own
            operation = operations.pop((route.path, method), None)
            if operation is None:
                undocumented.append(f"{method} {route.path}")
                continue
            documented[method.lower()] = {
                **_summary(resource, responders[method]),
                **operation,
                **_security(resource, method, operation["responses"]),
            }
        spec.path(route.path, operations=documented)
    if undocumented or operations:
        raise DocumentMismatch(
            f"routes without documentation: {undocumented or 'none'}; "
            f"documentation without a route: {[f'{m} {p}' for p, m in operations] or 'none'}"
        )
    return spec.to_dict()


def _summary(resource: object, responder: Callable[..., object]) -> dict[str, str]:
    """The responder's docstring, else its resource's: the first paragraph is the summary,
    the rest the description."""
    doc = inspect.getdoc(responder) or inspect.getdoc(type(resource)) or ""
    first, _, rest = ROUTE_PREFIX.sub("", doc).partition("\n\n")
    fields = {"summary": " ".join(first.split()), "description": rest.strip()}
    return {key: text[:1].upper() + text[1:] for key, text in fields.items() if text}


def _security(resource: object, method: str, responses: dict[int, Any]) -> dict[str, Any]:
    """The schemes that authenticate this operation, and the errors of a missing or wrong
    key; nothing for a public one."""
    auth = getattr(resource, "auth", None)
    if auth is None or method in KEYLESS_METHODS:
        return {}
    return {
        "security": [{scheme: []} for scheme in AUTH_SCHEMES[auth]],
        "responses": dict(sorted({**responses, **_errors(401, 403)}.items())),
    }


def _schema(schema: type | dict[str, Any]) -> str | dict[str, Any]:
    """A struct of BODIES by name (apispec makes it a $ref), or a schema as it is."""
    return schema if isinstance(schema, dict) else schema.__name__


def _body(content: dict[str, type | dict[str, Any]]) -> dict[str, Any]:
    media = {media_type: {"schema": _schema(schema)} for media_type, schema in content.items()}
    return {"required": True, "content": media}


def _json(description: str, schema: type | dict[str, Any]) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": _schema(schema)}},
    }


def _errors(*codes: int) -> dict[int, Any]:
    return {code: _json(ERRORS[code], ErrorBody) for code in codes}


def _query(
    name: str, schema: dict[str, Any], description: str, required: bool = False
) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "schema": schema,
        "description": description,
    }


class OpenApi:
    """GET /openapi.json: the OpenAPI document of this API."""

    def __init__(self) -> None:
        self.document = b""  # set by add_openapi, once the app has all its routes

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_JSON
        resp.data = self.document


def add_openapi(app: falcon.App, settings: Settings) -> None:
    """Serve the document of `app`'s routes, this one included, at /openapi.json.

    Call it after every other route is added: the document is built here, from the router.
    """
    resource = OpenApi()
    app.add_route("/openapi.json", resource)
    resource.document = msgspec.json.encode(openapi_document(app, settings))
