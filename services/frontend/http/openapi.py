"""GET /openapi.json: the OpenAPI 3.1 document, generated from the structs the code uses.

The request and response schemas are msgspec's JSON Schema of the very structs that validate
requests and shape responses (services/frontend/schemas.py, common/store.py,
common/control.py), so the document cannot drift from the code. Only the paths (which
route takes which struct, answers which status) are written here.
"""

from __future__ import annotations

from typing import Annotated, Any

import falcon
import msgspec
from msgspec import Meta

from common.config import Settings
from common.control import MeshSummary
from common.store import EntityPage
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
ERRORS = {
    "400": "Malformed JSON, empty body, bad encoding, or a bad query parameter.",
    "401": "No API key.",
    "403": "Wrong API key.",
    "404": "No such resource.",
    "413": "Body over the size limit.",
    "415": "Not JSON/NDJSON in UTF-8.",
    "422": "A field or item is invalid; the description names it.",
    "503": "Writes are stopped or draining, the backlog is full, or the journal is busy: "
    "retry after Retry-After seconds.",
}


def openapi_document(settings: Settings) -> dict[str, Any]:
    batch = Annotated[list[ArticleIn], Meta(min_length=1, max_length=settings.max_batch)]
    body_types: list[Any] = [
        ArticleIn | batch,
        EnqueueIn,
        Accepted,
        Queued,
        PublicationList,
        EntityPage,
        HealthBody,
        Readiness,
        MeshSummary,
        ErrorBody,
    ]
    schemas, components = msgspec.json.schema_components(body_types, ref_template=REF)
    articles_body, enqueue_body, accepted, queued, publications, page, health, ready, status, _ = (
        schemas
    )
    limit = {"type": "integer", "minimum": 1, "maximum": 1000}
    page_params = [
        _query("limit", {**limit, "default": 20}, "Entities per page."),
        _query("cursor", {"type": "string"}, "next_cursor of the previous page."),
        _query("label", {"type": "string"}, "Only entities of this label, e.g. PERSON."),
    ]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ingest-mesh",
            "version": "1",
            "description": "News articles in; named-entity counts per publication out.",
        },
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "accessToken": {"type": "apiKey", "in": "header", "name": "access_token"},
            },
        },
        "paths": {
            "/articles": {
                "post": {
                    "summary": "Accept one article, a JSON array of them, or NDJSON.",
                    "security": [{"bearer": []}, {"apiKey": []}],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": articles_body},
                            "application/x-ndjson": {
                                "schema": {
                                    "type": "string",
                                    "description": "One article object per line.",
                                }
                            },
                        },
                    },
                    "responses": {
                        "202": _json("Journaled: each will be counted once.", accepted),
                        **_errors("400", "401", "403", "413", "415", "422", "503"),
                    },
                }
            },
            "/post/enqueue": {
                "post": {
                    "summary": "The original course client's route.",
                    "security": [{"accessToken": []}],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": enqueue_body}},
                    },
                    "responses": {
                        "201": _json("Journaled.", queued),
                        **_errors("400", "401", "403", "413", "415", "422", "503"),
                    },
                }
            },
            "/publications": {
                "get": {
                    "summary": "Publications by article count.",
                    "parameters": [
                        _query("limit", {**limit, "default": 100}, "At most this many.")
                    ],
                    "responses": {"200": _json("Publications.", publications), **_errors("400")},
                }
            },
            "/publications/{name}/entities": {
                "get": {
                    "summary": "Top entities of a publication by count, ties by text.",
                    "parameters": [
                        {
                            "name": "name",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "minLength": 1},
                        },
                        *page_params,
                    ],
                    "responses": {"200": _json("A page.", page), **_errors("400", "404")},
                }
            },
            "/entities": {
                "get": {
                    "summary": "The same, with the publication as a query parameter.",
                    "parameters": [
                        _query("publication", {"type": "string"}, "Publication name.", True),
                        *page_params,
                    ],
                    "responses": {"200": _json("A page.", page), **_errors("400", "404")},
                }
            },
            "/health": {"get": {"responses": {"200": _json("The process is up.", health)}}},
            "/ready": {
                "get": {
                    "responses": {
                        "200": _json("Ready to accept writes.", ready),
                        "503": _json("Not ready; each failed check says why.", ready),
                    }
                }
            },
            "/status": {
                "get": {
                    "summary": "The whole mesh at a glance.",
                    "responses": {"200": _json("Status.", status), **_errors("503")},
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics of the whole mesh.",
                    "responses": {
                        "200": {
                            "description": "Prometheus text format.",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "responses": {
                        "200": {
                            "description": "This document.",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    }
                }
            },
        },
    }


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: str) -> dict[str, Any]:
    error = {"$ref": REF.format(name="ErrorBody")}
    return {code: _json(ERRORS[code], error) for code in codes}


def _query(name: str, schema: dict[str, Any], description: str, required: bool = False) -> dict:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "schema": schema,
        "description": description,
    }


class OpenApi:
    """GET /openapi.json."""

    def __init__(self, settings: Settings) -> None:
        self._document = msgspec.json.encode(openapi_document(settings))

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_JSON
        resp.data = self._document
