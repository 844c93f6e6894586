"""API-key authentication, as a Falcon middleware.

A resource says how it is authenticated with its `auth` attribute: "api_key" accepts
`Authorization: Bearer <key>` or `X-API-Key: <key>`; "access_token" is the original course
client's header; None (the default) is public. Keys come from configuration and are compared
in constant time. Missing credentials: 401; wrong ones: 403.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence

import falcon

# Reads are public (aggregate counts of public news); only these methods need no key.
KEYLESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class ApiKeyAuth:
    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ValueError("no API key configured: set INGEST_API_KEYS or the key file")
        self._keys = [k.encode() for k in keys]

    def process_resource(self, req: falcon.Request, resp, resource, params) -> None:
        scheme = getattr(resource, "auth", None)
        if scheme is None or req.method in KEYLESS_METHODS:
            return
        presented = _credential(req, scheme)
        if presented is None:
            raise falcon.HTTPUnauthorized(
                title="Authentication required",
                description=_how(scheme),
                challenges=["Bearer"] if scheme == "api_key" else None,
            )
        if not self._valid(presented):
            raise falcon.HTTPForbidden(title="Invalid API key", description="the key is not valid")

    def _valid(self, presented: str) -> bool:
        candidate = presented.encode()
        # Compare against every key, without stopping early, so timing reveals nothing.
        return sum(hmac.compare_digest(candidate, key) for key in self._keys) > 0


def _credential(req: falcon.Request, scheme: str) -> str | None:
    if scheme == "access_token":
        return req.get_header("access_token") or None
    authorization = req.get_header("Authorization")
    if authorization:
        kind, _, token = authorization.partition(" ")
        if kind.lower() == "bearer" and token.strip():
            return token.strip()
    return req.get_header("X-API-Key") or None


def _how(scheme: str) -> str:
    if scheme == "access_token":
        return "send the API key in the access_token header"
    return "send the API key as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
