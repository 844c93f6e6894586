"""The OpenAPI document against the real app: its routes, and what it answers to requests.

The document is read from GET /openapi.json of the app `create_app` builds (the conftest
fixtures), never from the function that built it, so each test compares it with behaviour:
the router's routes, real responses, real refusals of request bodies.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import falcon
import falcon.inspect
import falcon.testing
import jsonschema_rs
import pytest

from common.messages import Entity, Extraction, entity_key
from services.frontend.http.openapi import UNDOCUMENTED, DocumentMismatch, openapi_document
from services.frontend.http.resources import Health
from tests.unit.frontend.http.conftest import KEY, Gate, MeshStatusBoard

# jsonschema itself is not installed; jsonschema_rs is (schemathesis validates with it).
# OpenAPI 3.1 schemas are JSON Schema 2020-12.
DIALECT = "https://json-schema.org/draft/2020-12/schema"
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}

AUTH = {"Authorization": f"Bearer {KEY}"}
TOKEN = {"access_token": KEY}
ARTICLE = {"publication": "Daily", "content": "Qantas and BHP."}


def document_of(client: falcon.testing.TestClient) -> dict[str, Any]:
    result = client.simulate_get("/openapi.json")
    assert result.status_code == 200
    return result.json


def schema_errors(document: dict[str, Any], schema: dict[str, Any], instance: Any) -> list[str]:
    """Why `instance` does not fit `schema`; `#/components/...` refs resolve against the
    document's components, put at the root of the schema validated."""
    root = {"$schema": DIALECT, **schema, "components": document["components"]}
    return [error.message for error in jsonschema_rs.validator_for(root).iter_errors(instance)]


def seed(store) -> None:
    """Counts in the store, so read routes answer with entities rather than empty lists."""
    entities = [Entity(entity_key(t, "ORG"), t, "ORG", 1) for t in ("Qantas", "BHP")]
    store.commit([Extraction("a1", "Daily", entities, "local", 1)])


# --- Routes ---------------------------------------------------------------------------------


def test_every_route_is_documented_with_exactly_its_methods(client):
    document = document_of(client)
    routes = {
        route.path: {m.method.lower() for m in route.methods if not m.internal}
        for route in falcon.inspect.inspect_routes(client.app)
    }
    documented = {path: set(item) & HTTP_METHODS for path, item in document["paths"].items()}
    assert documented == {p: methods for p, methods in routes.items() if p not in UNDOCUMENTED}
    # What is left out is left out on purpose, and each exclusion still names a real route.
    statics = {route.prefix for route in falcon.inspect.inspect_static_routes(client.app)}
    assert (set(routes) - set(documented)) | statics == set(UNDOCUMENTED)


def test_a_route_without_documentation_is_refused(client, settings):
    client.app.add_route("/extra", Health())
    with pytest.raises(DocumentMismatch, match="GET /extra"):
        openapi_document(client.app, settings)


def test_documentation_without_a_route_is_refused(settings):
    app = falcon.App()
    app.add_route("/health", Health())
    with pytest.raises(DocumentMismatch, match="POST /articles"):
        openapi_document(app, settings)


# --- Responses ------------------------------------------------------------------------------


def stop_writes(gate: Gate, board: MeshStatusBoard) -> None:
    gate.why = "writes are stopped"


def lose_control(gate: Gate, board: MeshStatusBoard) -> None:
    board.summary = None


Setup = Callable[[Gate, MeshStatusBoard], None]


@dataclass(frozen=True)
class Call:
    """One real request, and the status it must get (so it tests the case it names)."""

    operation: str  # "METHOD /template", as the document names it
    status: int
    url: str = ""  # the URL path, when it is not the template
    request: dict[str, Any] = field(default_factory=dict)  # simulate_request's keywords
    setup: Setup | None = None

    def __str__(self) -> str:
        return f"{self.operation} {self.status}"


def post(
    path: str, status: int, headers: dict[str, str], *, setup: Setup | None = None, **request: Any
) -> Call:
    return Call(f"POST {path}", status, request={"headers": headers, **request}, setup=setup)


def get(
    template: str, status: int, url: str = "", *, setup: Setup | None = None, **params: str
) -> Call:
    return Call(f"GET {template}", status, url, {"params": params}, setup)


JSON = {"content_type": "application/json"}
TOO_LARGE = {**JSON, "body": b"x" * 5000}  # the fixture's max_body_bytes is 4096
CALLS = [
    post("/articles", 202, AUTH, json=ARTICLE),
    post("/articles", 202, {"X-API-Key": KEY}, json=[ARTICLE, {**ARTICLE, "id": "2"}]),
    post("/articles", 400, AUTH, body=b'{"publication": ', **JSON),
    post("/articles", 401, {}, json=ARTICLE),
    post("/articles", 403, {"X-API-Key": "wrong"}, json=ARTICLE),
    post("/articles", 413, AUTH, **TOO_LARGE),
    post("/articles", 415, {**AUTH, "Content-Type": "text/plain"}, body=b"Qantas"),
    post("/articles", 422, AUTH, json={"publication": "", "content": "t"}),
    post("/articles", 503, AUTH, json=ARTICLE, setup=stop_writes),
    post("/post/enqueue", 201, TOKEN, json=ARTICLE),
    post("/post/enqueue", 400, TOKEN, body=b"{", **JSON),
    post("/post/enqueue", 401, {}, json=ARTICLE),
    post("/post/enqueue", 403, {"access_token": "wrong"}, json=ARTICLE),
    post("/post/enqueue", 413, TOKEN, **TOO_LARGE),
    post("/post/enqueue", 415, {**TOKEN, "Content-Type": "text/plain"}, body=b"Qantas"),
    post("/post/enqueue", 422, TOKEN, json={"publication": "Daily"}),
    post("/post/enqueue", 503, TOKEN, json=ARTICLE, setup=stop_writes),
    get("/publications", 200),
    get("/publications", 400, limit="0"),
    get("/publications/{name}/entities", 200, "/publications/Daily/entities", limit="1"),
    get("/publications/{name}/entities", 400, "/publications/Daily/entities", cursor="!!"),
    get("/publications/{name}/entities", 404, "/publications/Nope/entities"),
    get("/entities", 200, publication="Daily", label="ORG"),
    get("/entities", 400),  # publication is required
    get("/entities", 404, publication="Nope"),
    get("/health", 200),
    get("/ready", 200),
    get("/ready", 503, setup=stop_writes),
    get("/status", 200),
    get("/status", 503, setup=lose_control),
    get("/metrics", 200),
    get("/openapi.json", 200),
]


@pytest.mark.parametrize("call", CALLS, ids=str)
def test_answers_are_documented_and_fit_their_schema(client, store, gate, board, call: Call):
    document = document_of(client)
    seed(store)
    if call.setup:
        call.setup(gate, board)
    method, template = call.operation.split(" ")
    result = client.simulate_request(method, call.url or template, **call.request)
    assert result.status_code == call.status, result.text

    responses = document["paths"][template][method.lower()]["responses"]
    assert str(result.status_code) in responses, f"{call.operation} answers an undocumented status"
    content = responses[str(result.status_code)]["content"]
    media_type = result.headers["content-type"].partition(";")[0]
    assert media_type in content, f"{call.operation} answers undocumented {media_type}"
    body = result.json if media_type == falcon.MEDIA_JSON else result.text
    assert schema_errors(document, content[media_type]["schema"], body) == []


def test_every_documented_answer_is_exercised(client):
    """A status documented but never produced here is either wrong or untested."""
    document = document_of(client)
    documented = {
        f"{method.upper()} {path} {status}"
        for path, item in document["paths"].items()
        for method, operation in item.items()
        for status in operation["responses"]
    }
    assert documented == {str(call) for call in CALLS}


def test_a_body_that_does_not_fit_its_schema_is_caught(client):
    """The check above is not vacuous: refs resolve and a wrong body is told apart."""
    document = document_of(client)
    ok = document["paths"]["/articles"]["post"]["responses"]["202"]["content"]
    schema = ok[falcon.MEDIA_JSON]["schema"]
    assert schema_errors(document, schema, {"accepted": 1, "ids": ["a"]}) == []
    assert schema_errors(document, schema, {"title": "Invalid article"}) != []
    assert schema_errors(document, schema, {"accepted": "1", "ids": ["a"]}) != []


# --- Requests -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "headers", "body", "status"),
    [
        ("/articles", AUTH, ARTICLE, 202),
        ("/articles", AUTH, [{**ARTICLE, "id": str(n)} for n in range(5)], 202),  # max_batch
        ("/articles", AUTH, [{**ARTICLE, "id": str(n)} for n in range(6)], 422),
        ("/articles", AUTH, [], 422),
        ("/articles", AUTH, {**ARTICLE, "id": "a b"}, 422),
        ("/articles", AUTH, {**ARTICLE, "publication": " \u3000"}, 422),
        ("/articles", AUTH, {**ARTICLE, "publication": "P" * 201}, 422),
        ("/articles", AUTH, {**ARTICLE, "source": "wire"}, 422),  # unknown fields are refused
        ("/post/enqueue", TOKEN, {**ARTICLE, "source": "wire"}, 201),  # ... but ignored here
        ("/post/enqueue", TOKEN, {"publication": "Daily", "content": "\ufeff"}, 422),
        ("/articles", AUTH, {**ARTICLE, "publication": "Daily\x07"}, 422),
        ("/articles", AUTH, {**ARTICLE, "publication": "Da\u202eily"}, 422),
        ("/articles", AUTH, {**ARTICLE, "publication": "\u2066Daily\u2069"}, 422),
        ("/articles", AUTH, {**ARTICLE, "publication": "Dai\u200bly"}, 422),
        ("/articles", AUTH, {**ARTICLE, "publication": "Daily\n"}, 422),
        ("/articles", AUTH, {**ARTICLE, "publication": " Le\u00a0Soir"}, 202),
        ("/articles", AUTH, {**ARTICLE, "id": "a1\n"}, 422),  # Python's `$` would take it
        ("/post/enqueue", TOKEN, {"publication": "Daily\u200f", "content": "Text."}, 422),
    ],
)
def test_the_documented_request_schema_decides_as_the_app_does(client, path, headers, body, status):
    """A JSON body fits the documented schema exactly when the app accepts it."""
    document = document_of(client)
    content = document["paths"][path]["post"]["requestBody"]["content"]
    fits = schema_errors(document, content[falcon.MEDIA_JSON]["schema"], body) == []
    result = client.simulate_post(path, json=body, headers=headers)
    assert result.status_code == status, result.text
    assert fits == (status < 300)


def patterns_in(node: Any) -> Iterator[str]:
    """Every `pattern` of a JSON Schema document, however deep."""
    if isinstance(node, dict):
        if isinstance(node.get("pattern"), str):
            yield node["pattern"]
        for value in node.values():
            yield from patterns_in(value)
    elif isinstance(node, list):
        for value in node:
            yield from patterns_in(value)


def test_documented_patterns_decide_alike_in_python_and_ecmascript(client):
    """The app validates a pattern with Python's re (msgspec searches it); clients and
    schemathesis with ECMAScript's (jsonschema_rs). Each must decide every string alike:
    every character of the Basic Multilingual Plane (and two beyond), alone, between
    letters, at either end of one, and next to a space."""
    patterns = set(patterns_in(document_of(client)))
    assert len(patterns) >= 3  # publication names, not blank, client ids
    characters = [chr(c) for c in [*range(0xD800), *range(0xE000, 0x10000), 0x1F600, 0xE0001]]
    for pattern in patterns:
        python = re.compile(pattern)
        ecmascript = jsonschema_rs.validator_for({"type": "string", "pattern": pattern})
        differ = [
            text
            for c in characters
            for text in (c, f"a{c}", f"{c}a", f"a{c}a", f"{c} ", f" {c}")
            if bool(python.search(text)) != ecmascript.is_valid(text)
        ]
        assert differ == [], f"{pattern!r} decides {differ[:5]!r} differently"


def test_documented_query_parameters_are_the_apps(client, store):
    """Integer parameters take exactly their documented range; required ones are required."""
    document = document_of(client)
    seed(store)
    checked = 0
    for path, item in document["paths"].items():
        url = path.replace("{name}", "Daily")
        for method, operation in item.items():
            query = [p for p in operation.get("parameters", []) if p["in"] == "query"]
            # Every required parameter given, so each request tests one parameter alone.
            base = {p["name"]: "Daily" for p in query if p["required"]}

            def status(params: dict[str, str], method: str = method, url: str = url) -> int:
                return client.simulate_request(method.upper(), url, params=params).status_code

            for parameter in query:
                name, schema = parameter["name"], parameter["schema"]
                if parameter["required"]:
                    assert status({k: v for k, v in base.items() if k != name}) == 400, name
                if schema.get("type") == "integer":
                    low, high = schema["minimum"], schema["maximum"]
                    for value, expected in [
                        (low, 200),
                        (high, 200),
                        (low - 1, 400),
                        (high + 1, 400),
                    ]:
                        got = status({**base, name: str(value)})
                        assert got == expected, f"{method} {path} {name}={value}: {got}"
                checked += 1
    assert checked >= 4  # limit of /publications and of both entity routes, publication


@pytest.mark.parametrize("path", ["/articles", "/post/enqueue"])
def test_each_documented_key_scheme_authenticates(client, path):
    """The security schemes say where the key goes: following each one is enough."""
    document = document_of(client)
    schemes = document["components"]["securitySchemes"]
    requirements = document["paths"][path]["post"]["security"]
    assert requirements
    for (name,) in requirements:
        scheme = schemes[name]
        if scheme["type"] == "http":
            headers = {"Authorization": f"{scheme['scheme'].title()} {KEY}"}
        else:
            assert scheme["in"] == "header"
            headers = {scheme["name"]: KEY}
        result = client.simulate_post(path, json=ARTICLE, headers=headers)
        assert result.status_code < 300, (name, result.text)


def test_operations_without_security_answer_without_a_key(client, store):
    """An operation the document shows without security must not ask for a key."""
    document = document_of(client)
    seed(store)
    public = [
        (method, path)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if "security" not in operation
    ]
    assert public
    for method, path in public:
        url = path.replace("{name}", "Daily")
        params = {"publication": "Daily"} if path == "/entities" else None
        result = client.simulate_request(method.upper(), url, params=params)
        assert result.status_code not in (401, 403), (method, path)
