"""The frontend's Falcon app. gunicorn calls `get_app()` in each worker (after fork);
tests call `create_app()` with their own journal and store."""

from __future__ import annotations

from collections.abc import Callable

import falcon
import zmq

from common.config import Settings, load_settings
from common.control import ControlLink, MeshSummary, ask, summarize
from common.sockets import MeshSockets
from common.store import Store
from services.frontend.appends import AppendSignal
from services.frontend.http.auth import ApiKeyAuth
from services.frontend.http.dashboard import SecurityHeaders, add_dashboard
from services.frontend.http.intake import Intake
from services.frontend.http.metrics import Metrics, RequestMetrics
from services.frontend.http.openapi import add_openapi
from services.frontend.http.resources import (
    Admission,
    Articles,
    Enqueue,
    Entities,
    Health,
    MeshStatus,
    Publications,
    Ready,
    Status,
    Writes,
    WritesInProgress,
)
from services.frontend.journal import GateKeeper, Journal
from store import open_store


def create_app(
    settings: Settings,
    journal: Journal,
    store: Store,
    admission: Admission,
    mesh_status: MeshStatus,
    in_progress: WritesInProgress | None = None,
    on_journaled: Callable[[], None] | None = None,
) -> falcon.App:
    # SecurityHeaders first: its process_response runs last, over every other's answer.
    app = falcon.App(
        middleware=[SecurityHeaders(), RequestMetrics(), ApiKeyAuth(settings.load_api_keys())]
    )
    app.req_options.strip_url_path_trailing_slash = True
    writes = Writes(
        journal,
        admission,
        settings.retry_after_seconds,
        settings.max_backlog,
        in_progress,
        on_journaled,
    )
    intake = Intake(settings.max_batch)
    app.add_route("/articles", Articles(writes, intake, settings.max_body_bytes))
    app.add_route("/post/enqueue", Enqueue(writes, settings.max_body_bytes))
    app.add_route("/publications", Publications(store))
    entities = Entities(store)
    app.add_route("/publications/{name}/entities", entities)
    app.add_route("/entities", entities, suffix="query")
    app.add_route("/health", Health())
    app.add_route("/ready", Ready(admission, mesh_status, store))
    app.add_route("/status", Status(mesh_status))
    app.add_route("/metrics", Metrics(settings.metrics_path, mesh_status))
    add_dashboard(app)
    add_openapi(app, settings)  # last: it documents the routes above, and fails on one it does not
    return app


def get_app() -> falcon.App:
    settings = load_settings()
    journal = Journal(settings.journal_path, synchronous=settings.journal_synchronous)
    # The control link closes and opens this host's journal gate as the pipeline state
    # changes, and confirms a state only once no write admitted before it is running.
    in_progress = WritesInProgress()
    gate = GateKeeper(
        settings.journal_path,
        synchronous=settings.journal_synchronous,
        running_since=in_progress.confirmable,
    )
    control = ControlLink(settings, "frontend", apply=gate).start()
    # The ledger sleeps until a worker says it journaled rows (services/frontend/appends.py).
    # On the process's shared context, as `ask` uses it: no second I/O thread.
    appends = AppendSignal(
        MeshSockets(settings, zmq.Context.instance()), settings.journal_appends_endpoint
    )

    def mesh_status() -> MeshSummary:
        return summarize(ask(settings, "status", timeout=1.0))

    return create_app(
        settings,
        journal,
        open_store(settings),
        control,
        mesh_status,
        in_progress,
        on_journaled=appends.rows_appended,
    )
