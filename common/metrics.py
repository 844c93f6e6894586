"""Every Prometheus metric of the mesh, named and documented in one place.

The mesh runs prometheus-client in multiprocess mode: `ingest up` points every process at
one folder (`PROMETHEUS_MULTIPROC_DIR=<data_dir>/metrics`, set from the settings), each
process writes its samples there, and the frontend's `GET /metrics` aggregates the folder,
so one scrape covers the whole mesh of that host, including processes that have since died
(their counters keep counting toward the totals). Gauges use "mostrecent": the last value
any process wrote. Outside the mesh (unit tests) the same objects simply count in-process.

The pipeline state and live processes per stage are not stored here: the frontend adds them
at scrape time from the control server's view (see services/frontend/http/metrics.py).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# -- frontend ------------------------------------------------------------------------------
ACCEPTED = Counter(
    "ingest_articles_accepted", "Articles answered 2xx (journaled, or already journaled)."
)
JOURNALED = Counter("ingest_articles_journaled", "New rows written to the intake journal.")
REJECTED = Counter(
    "ingest_requests_rejected",
    "Write requests refused, by reason (one per request, however many articles it held).",
    ["reason"],
)
REQUEST_SECONDS = Histogram(
    "ingest_http_request_duration_seconds",
    "HTTP request latency, by route template and method.",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

# -- ledger --------------------------------------------------------------------------------
DISPATCHED = Counter("ingest_articles_dispatched", "Article sends to the extractors.")
REDELIVERED = Counter(
    "ingest_articles_redelivered", "Sends of an article already sent (lease ran out or failure)."
)
ACKNOWLEDGED = Counter(
    "ingest_articles_acknowledged", "Articles acknowledged by savers and removed from the journal."
)
DEAD_LETTERED = Counter(
    "ingest_articles_dead_lettered",
    "Articles set aside: max_attempts failures, or a failure no retry can fix.",
)
FRESHNESS = Histogram(
    "ingest_freshness_seconds",
    "From an article's 202 to its acknowledgement (its counts committed and readable).",
    buckets=(0.1, 0.25, 0.5, 1, 1.5, 2, 3, 5, 10, 30, 60, 300),
)
ACKS_REFUSED = Counter(
    "ingest_acks_refused", "Acks and failures without a dispatch token the ledger issued."
)
BACKLOG = Gauge(
    "ingest_journal_backlog_articles",
    "Journal rows not yet acknowledged.",
    multiprocess_mode="mostrecent",
)
OLDEST_AGE = Gauge(
    "ingest_journal_oldest_age_seconds",
    "Age of the oldest unacknowledged journal row.",
    multiprocess_mode="mostrecent",
)
DEAD_LETTERS = Gauge(
    "ingest_dead_letters", "Articles waiting in dead letters.", multiprocess_mode="mostrecent"
)
IN_FLIGHT = Gauge(
    "ingest_ledger_in_flight_articles",
    "Articles dispatched and not yet acknowledged.",
    multiprocess_mode="mostrecent",
)

# -- extractor -----------------------------------------------------------------------------
EXTRACTED = Counter("ingest_articles_extracted", "Articles run through NER.")
TEXT_CACHE_HITS = Counter(
    "ingest_text_cache_hits",
    "Articles whose text was extracted before on this host (a syndicated copy): no NER run.",
)
EXTRACTION_FAILURES = Counter(
    "ingest_extraction_failures", "Articles whose extraction raised (reported to the ledger)."
)
BATCH_SECONDS = Histogram(
    "ingest_extraction_batch_seconds",
    "Time to run NER on one batch.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32),
)

# -- saver ---------------------------------------------------------------------------------
COMMITTED = Counter("ingest_articles_committed", "Articles newly counted in the store.")
DUPLICATES = Counter(
    "ingest_articles_duplicate", "Re-delivered articles whose marker existed (added nothing)."
)
COMMIT_SECONDS = Histogram(
    "ingest_store_commit_seconds",
    "Time of one successful store commit (one flush).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
COMMIT_FAILURES = Counter("ingest_store_commit_failures", "Store commits that raised (retried).")
POISON = Counter(
    "ingest_articles_poison", "Articles the store refused for good (dead-lettered with its error)."
)
DOCUMENT_WRITES = Counter(
    "ingest_store_document_writes",
    "Publication and entity document increments (one per document per commit).",
)
HOTTEST_DOCUMENT_RATE = Gauge(
    "ingest_store_hottest_document_writes_per_second",
    "Writes per second of the most written document over the last 10 s (highest saver).",
    multiprocess_mode="livemax",
)

# -- every process -----------------------------------------------------------------------------
FRAMES_DROPPED = Counter(
    "ingest_frames_dropped", "ZeroMQ frames dropped as invalid (undecodable, out of bounds)."
)
