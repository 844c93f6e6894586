"""A gRPC proxy in front of Google's Firestore emulator that injects contention.

The emulator applies every commit at once: it has no per-document write limit and never
answers `ABORTED: Too much contention`. Real Firestore does, past about one sustained
write per second on a document. So the tests put this proxy between the savers and the
real emulator (savers point `firestore_emulator_host` at it): it forwards every call
unchanged, except that a Commit writing to a publication listed in `contended` is answered
ABORTED, as Firestore answers it. It also records every commit that went through, with the
documents it wrote: an audit of write rates across all savers that relies on nothing the
savers say about themselves.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass

import grpc
from google.cloud.firestore_v1.types import firestore as firestore_types

from store.firestore.ids import document_id

SERVICE = "/google.firestore.v1.Firestore/"
STREAMING = {"BatchGetDocuments", "RunQuery", "RunAggregationQuery"}
CommitRequestPb = firestore_types.CommitRequest.pb()


@dataclass(frozen=True, slots=True)
class Commit:
    at: float  # time.monotonic() when it reached the proxy
    documents: frozenset[str]  # "publications/..." documents written (markers left out)


class ContentionProxy(grpc.GenericRpcHandler):
    def __init__(self, upstream: str) -> None:
        self._channel = grpc.insecure_channel(upstream)
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
        self._server.add_generic_rpc_handlers([self])
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self.host = f"127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        self._contended: set[str] = set()  # publication document ids
        self.commits: list[Commit] = []
        self.aborted: list[tuple[float, str]] = []  # (when, publication id)

    def start(self) -> ContentionProxy:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(grace=None)
        self._channel.close()

    def contend(self, *publications: str) -> None:
        """From now on, commits writing to these publications are answered ABORTED."""
        with self._lock:
            self._contended = {document_id(p) for p in publications}

    # -- grpc.GenericRpcHandler ------------------------------------------------------------

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method = details.method
        name = method.removeprefix(SERVICE)
        if name in STREAMING:
            return grpc.unary_stream_rpc_method_handler(
                lambda request, context: self._stream(method, request, context)
            )
        if name == "Commit":
            return grpc.unary_unary_rpc_method_handler(self._commit)
        return grpc.unary_unary_rpc_method_handler(
            lambda request, context: self._unary(method, request, context)
        )

    def _commit(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        documents = self._documents(request)
        with self._lock:
            hit = next((p for p in self._contended if f"publications/{p}" in documents), None)
        if hit is not None:
            self.aborted.append((time.monotonic(), hit))
            context.abort(
                grpc.StatusCode.ABORTED,
                "Too much contention on these datastore entities. Please try again. "
                "(injected by the test's proxy)",
            )
        arrived = time.monotonic()
        response = self._unary(SERVICE + "Commit", request, context)
        with self._lock:
            self.commits.append(Commit(arrived, frozenset(documents)))
        return response

    @staticmethod
    def _documents(request: bytes) -> set[str]:
        commit = CommitRequestPb.FromString(request)
        names = (w.update.name.partition("/documents/")[2] for w in commit.writes)
        return {name for name in names if name.startswith("publications/")}

    def _unary(self, method: str, request: bytes, context: grpc.ServicerContext) -> bytes:
        call = self._channel.unary_unary(method)
        try:
            return call(request, metadata=_forwarded(context), timeout=context.time_remaining())
        except grpc.RpcError as error:
            context.abort(error.code(), error.details())

    def _stream(
        self, method: str, request: bytes, context: grpc.ServicerContext
    ) -> Iterator[bytes]:
        call = self._channel.unary_stream(method)
        try:
            yield from call(request, metadata=_forwarded(context))
        except grpc.RpcError as error:
            context.abort(error.code(), error.details())


def _forwarded(context: grpc.ServicerContext) -> list[tuple[str, str]]:
    """The caller's metadata (the emulator's auth header, routing headers), less what gRPC
    sets itself."""
    return [
        (key, value)
        for key, value in context.invocation_metadata()
        if not key.startswith(":") and key not in ("user-agent", "grpc-timeout", "te")
    ]


def most_writes_in_any_window(commits: list[Commit], seconds: float) -> tuple[str, int]:
    """The document written most often within any `seconds`-long window, and how often."""
    times: dict[str, list[float]] = {}
    for commit in commits:
        for document in commit.documents:
            times.setdefault(document, []).append(commit.at)
    best = ("", 0)
    for document, at in times.items():
        at.sort()
        start = 0
        for end in range(len(at)):
            while at[end] - at[start] >= seconds:
                start += 1
            if end - start + 1 > best[1]:
                best = (document, end - start + 1)
    return best
