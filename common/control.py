"""The control channel every process shares: pipeline state, reports, and commands.

The control server (services/control/__main__.py) owns three endpoints:

    state     XPUB    bind  settings.control_state_endpoint    -> every process (SUB)
    reports   PULL    bind  settings.control_report_endpoint   <- every process (PUSH)
    commands  ROUTER  bind  settings.control_command_endpoint  <- the CLI (REQ)

State is a last value cache (ZeroMQ guide, "Last Value Caching"): the server re-sends the
current state to every new subscriber and re-broadcasts it every second, so a late joiner
hears it at once. A process that has not heard a fresh state must act as "not accepting".
Each process reports every second (and at once on a state change) what it has seen and
counted, which is how `ingest status` and stop-writes confirmations see the whole mesh.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Literal

import msgspec
import zmq

from common.config import Settings
from common.messages import Codec
from common.sockets import MeshSockets

log = logging.getLogger("control")

StateName = Literal["accepting", "stopped", "draining"]
REPORT_SECONDS = 1.0


class State(msgspec.Struct, frozen=True, tag="state.v1"):
    name: StateName
    seq: int


class Report(msgspec.Struct, frozen=True, tag="report.v1"):
    """What one process has seen and counted, pushed every second."""

    stage: str
    pid: int
    host: str
    state_seq: int
    counters: dict[str, float] = {}


class Command(msgspec.Struct, frozen=True, tag="command.v1"):
    """stop-writes | resume | drain | status. `wait` bounds how long to wait for the
    frontends to confirm a new state."""

    name: Literal["stop-writes", "resume", "drain", "status"]
    wait: float = 5.0


class Reply(msgspec.Struct, frozen=True, tag="reply.v1"):
    ok: bool
    state: State
    detail: str = ""
    reports: list[Report] = []


ControlMessage = State | Report | Command | Reply
_codec: Codec[ControlMessage] = Codec(ControlMessage)
encode = _codec.encode
decode = _codec.decode
decode_or_drop = _codec.decode_or_drop
# The largest control frame: a reply lists every process's report (~300 bytes each).
CONTROL_BYTES = 1 << 20


class ControlLink:
    """A process's link to the control server, run by a daemon thread.

    It keeps the latest state heard (and when), and reports this process's counters every
    second and right after each new state. The owning process reads `accepting()`; the
    counters callback is called from the link's thread.

    A new state is confirmed (reported as `state_seq`) only once `apply(state)` says so:
    `apply` runs in the link's thread, does what the state means for this process (a
    frontend process closes or opens its journal's write gate) and returns the seq it can
    confirm, lower while work admitted under an older state is still running. It is called
    again every poll until it confirms the state heard. Without `apply`, hearing is
    confirming.
    """

    def __init__(
        self,
        settings: Settings,
        stage: str,
        counters: Callable[[], dict[str, float]] = dict,
        *,
        apply: Callable[[State], int] | None = None,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._stage = stage
        self._counters = counters
        self._apply = apply or (lambda state: state.seq)
        self._now = now
        self.state: State | None = None
        self.heard_at = float("-inf")
        self.confirmed_seq = -1
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"control-{stage}", daemon=True)

    def start(self) -> ControlLink:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)

    def heard_seq(self) -> int:
        """The seq of the last state heard (-1: none yet)."""
        state = self.state
        return state.seq if state else -1

    def accepting(self) -> tuple[bool, str]:
        """(True, "") when writes may be accepted; else (False, why)."""
        state = self.state
        if state is None:
            return False, "the pipeline state has not been heard yet"
        stale_after = self._settings.control_stale_seconds
        if self._now() - self.heard_at > stale_after:
            return False, f"no pipeline state heard for over {stale_after:.0f}s"
        if state.name != "accepting":
            return False, f"writes are {state.name}"
        return True, ""

    def _run(self) -> None:
        sockets = MeshSockets(self._settings)
        states = sockets.connect(
            zmq.SUB, self._settings.control_state_endpoint, max_bytes=CONTROL_BYTES
        )
        states.setsockopt(zmq.SUBSCRIBE, b"")
        reports = sockets.connect(
            zmq.PUSH, self._settings.control_report_endpoint, hwm=10, max_bytes=CONTROL_BYTES
        )
        next_report = 0.0
        try:
            while not self._stopping.is_set():
                if states.poll(100):
                    self._receive(states)
                if self._confirm():
                    next_report = 0.0  # confirm a new state at once
                if self._now() >= next_report:
                    next_report = self._now() + REPORT_SECONDS
                    self._report(reports)
        finally:
            sockets.close()

    def _confirm(self) -> bool:
        """Apply the state heard if it is not confirmed yet; True if the confirmed seq moved."""
        state = self.state
        if state is None or self.confirmed_seq >= state.seq:
            return False
        try:
            confirmed = self._apply(state)
        except Exception:  # e.g. the journal locked past its timeout: try again next poll
            log.exception("could not apply the pipeline state", extra={"seq": state.seq})
            return False
        if confirmed <= self.confirmed_seq:
            return False
        self.confirmed_seq = confirmed
        return True

    def _receive(self, states: zmq.Socket) -> None:
        while True:
            try:
                frame = states.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            message = decode_or_drop(frame, log, "control state")
            if isinstance(message, State):
                if self.state is None or message.seq != self.state.seq:
                    log.info("pipeline state", extra={"state": message.name, "seq": message.seq})
                self.state = message
                self.heard_at = self._now()

    def _report(self, reports: zmq.Socket) -> None:
        seq = self.confirmed_seq
        try:
            counters = self._counters()
        except Exception:  # a counter bug must not silence the heartbeat
            log.exception("counters failed")
            counters = {}
        report = Report(self._stage, os.getpid(), socket.gethostname(), seq, counters)
        # If the control server is away, the next heartbeat will do.
        with contextlib.suppress(zmq.Again):
            reports.send(encode(report), zmq.NOBLOCK)


class ControlUnavailable(RuntimeError):
    """The control server did not answer: the mesh is not running, or control is down."""


def ask(settings: Settings, name: str, *, wait: float = 5.0, timeout: float | None = None) -> Reply:
    """Send one command to the control server and return its reply.

    A fresh REQ socket per call: a REQ that timed out cannot be reused, and commands are
    rare (the CLI, a dashboard refresh every few seconds).
    """
    # The process's shared context: the frontend asks on every /status, /ready and scrape,
    # and a context per call would start and stop its I/O thread each time.
    sockets = MeshSockets(settings, zmq.Context.instance())
    request = sockets.connect(zmq.REQ, settings.control_command_endpoint, max_bytes=CONTROL_BYTES)
    try:
        request.send(encode(Command(name, wait=wait)))  # type: ignore[arg-type]
        if not request.poll(int((timeout if timeout is not None else wait + 5.0) * 1000)):
            raise ControlUnavailable(
                f"no answer from the control server at {settings.control_command_endpoint}"
            )
        reply = decode_or_drop(request.recv(), log, "control reply")
    finally:
        request.setsockopt(zmq.LINGER, 0)
        sockets.close()
    if not isinstance(reply, Reply):
        raise ControlUnavailable(f"unexpected answer from the control server: {reply!r}")
    return reply


class MeshSummary(msgspec.Struct, frozen=True):
    """The whole mesh at a glance, from the processes' last reports."""

    state: StateName
    seq: int
    processes: dict[str, int]  # live processes per stage (frontend: gunicorn workers)
    backlog: int  # journal rows not yet acknowledged, all ledgers
    oldest_age_seconds: float
    dead_letters: int
    redelivered: int
    extracted: int  # since each process started
    committed: int
    acknowledged_per_second: float


def summarize(reply: Reply) -> MeshSummary:
    def total(stage: str, counter: str) -> float:
        return sum(r.counters.get(counter, 0) for r in reply.reports if r.stage == stage)

    processes: dict[str, int] = {}
    for report in reply.reports:
        processes[report.stage] = processes.get(report.stage, 0) + 1
    ledgers = [r for r in reply.reports if r.stage == "ledger"]
    return MeshSummary(
        state=reply.state.name,
        seq=reply.state.seq,
        processes=processes,
        backlog=int(total("ledger", "backlog")),
        oldest_age_seconds=max(
            (r.counters.get("oldest_age_seconds", 0.0) for r in ledgers), default=0.0
        ),
        dead_letters=int(total("ledger", "dead_letters")),
        redelivered=int(total("ledger", "redelivered")),
        extracted=int(total("extractor", "extracted")),
        committed=int(total("saver", "committed")),
        acknowledged_per_second=total("ledger", "ack_rate"),
    )
