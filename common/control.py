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
# How soon a state heard but not yet confirmed is applied again (a frontend process waits
# for the writes admitted under the older state).
CONFIRM_RETRY_SECONDS = 0.1


class State(msgspec.Struct, frozen=True, tag="state.v1"):
    """The pipeline state (`name`, changed at `seq`), as control broadcasts it.

    `look` counts the "look" commands this control server has taken since it started
    (`boot`, random per start): a ledger reports, with each look at its journal, the
    (boot, look) it had heard before it, so a drain knows which looks are newer than
    itself without comparing clocks (services/control/mesh.py, `drain`)."""

    name: StateName
    seq: int
    look: int = 0
    boot: int = 0


class Report(msgspec.Struct, frozen=True, tag="report.v1"):
    """What one process has seen and counted, pushed every second."""

    stage: str
    pid: int
    host: str
    state_seq: int
    counters: dict[str, float] = {}


class Command(msgspec.Struct, frozen=True, tag="command.v1"):
    """stop-writes | resume | drain | status | down | look. `wait` bounds how long to wait
    for the frontends to confirm a new state (down: for every other host to stop). `look`
    asks every ledger for a look at its journal newer than the command (State.look)."""

    name: Literal["stop-writes", "resume", "drain", "status", "down", "look"]
    wait: float = 5.0


class Halt(msgspec.Struct, frozen=True, tag="halt.v1"):
    """`ingest down` on a fleet: every process hearing it, except on host `spare` (the
    control server's, which stops last), stops its own host's circusd. Never stored: a
    control server that restarts has forgotten it, so a fleet started again is not halted."""

    seq: int
    spare: str


class Reply(msgspec.Struct, frozen=True, tag="reply.v1"):
    ok: bool
    state: State
    detail: str = ""
    reports: list[Report] = []


ControlMessage = State | Report | Command | Reply | Halt
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
        self.halted_seq = -1  # the Halt this process acted on (reported as "halted")
        self._stopping = threading.Event()
        # The link's thread sleeps until a state arrives or a report is due; stop() wakes it
        # through an inproc socket of this context (ZeroMQ's way of signalling a thread).
        self._context = zmq.Context()
        self._wake_endpoint = f"inproc://control-link-wake-{id(self)}"
        self._thread = threading.Thread(target=self._run, name=f"control-{stage}", daemon=True)

    def start(self) -> ControlLink:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._context.closed:
            return  # stopped already
        wake = self._context.socket(zmq.PUSH)
        wake.connect(self._wake_endpoint)
        with contextlib.suppress(zmq.Again):
            wake.send(b"", zmq.NOBLOCK)
        # Closed only once the thread is done (closing it at once could drop the signal),
        # and the context last: term() waits for every socket of it to close.
        self._thread.join(timeout=5)
        wake.close(linger=0)
        if not self._thread.is_alive():
            self._context.term()

    def heard_seq(self) -> int:
        """The seq of the last state heard (-1: none yet)."""
        state = self.state
        return state.seq if state else -1

    def heard_look(self) -> dict[str, float]:
        """The (boot, look) of the last state heard, as report counters: read it before
        looking at something, and report both together (State's docstring)."""
        state = self.state
        return {"look_boot": state.boot, "look": state.look} if state else {}

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
        sockets = MeshSockets(self._settings, self._context)
        states = sockets.connect(
            zmq.SUB, self._settings.control_state_endpoint, max_bytes=CONTROL_BYTES
        )
        states.setsockopt(zmq.SUBSCRIBE, b"")
        reports = sockets.connect(
            zmq.PUSH, self._settings.control_report_endpoint, hwm=10, max_bytes=CONTROL_BYTES
        )
        wake = self._context.socket(zmq.PULL)
        wake.bind(self._wake_endpoint)
        poller = zmq.Poller()
        poller.register(states, zmq.POLLIN)
        poller.register(wake, zmq.POLLIN)
        next_report = 0.0
        try:
            while not self._stopping.is_set():
                halted = self.halted_seq
                # Asleep until a state comes, a report is due, or stop(); a state not yet
                # confirmed is applied again every CONFIRM_RETRY_SECONDS. (Waking every
                # 100 ms whatever happened was most of an idle process's wake-ups.)
                wait = max(0.0, next_report - self._now())
                if self.state is not None and self.confirmed_seq < self.state.seq:
                    wait = min(wait, CONFIRM_RETRY_SECONDS)
                if states in dict(poller.poll(max(1, int(wait * 1000)))):
                    self._receive(states)
                if self._confirm() or self.halted_seq != halted:
                    next_report = 0.0  # confirm a new state (or a halt) at once
                if self._now() >= next_report:
                    next_report = self._now() + REPORT_SECONDS
                    self._report(reports)
        finally:
            wake.close(linger=0)
            sockets.close()  # not the context: stop() terminates it

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
            if isinstance(message, Halt):
                self._halt(message)
            elif isinstance(message, State):
                if self.state is None or message.seq != self.state.seq:
                    log.info("pipeline state", extra={"state": message.name, "seq": message.seq})
                self.state = message
                self.heard_at = self._now()

    def _halt(self, halt: Halt) -> None:
        """Stop this host's circusd (once per Halt), unless this is the control's host."""
        if halt.spare == self._settings.host_name or self.halted_seq >= halt.seq:
            return
        log.info("halt: stopping this host's circusd", extra={"seq": halt.seq})
        if quit_circus(self._settings):
            self.halted_seq = halt.seq

    def _report(self, reports: zmq.Socket) -> None:
        seq = self.confirmed_seq
        try:
            counters = self._counters()
        except Exception:  # a counter bug must not silence the heartbeat
            log.exception("counters failed")
            counters = {}
        if self.halted_seq >= 0:
            counters = {**counters, "halted": self.halted_seq}
        report = Report(self._stage, os.getpid(), self._settings.host_name, seq, counters)
        # If the control server is away, the next heartbeat will do.
        with contextlib.suppress(zmq.Again):
            reports.send(encode(report), zmq.NOBLOCK)


def quit_circus(settings: Settings, *, timeout: float = 5.0) -> bool:
    """Ask this host's circusd to stop every watcher gracefully and exit, without waiting
    (the caller is one of its processes). True if circusd took the order."""
    from circus.client import CircusClient  # only the halting process needs it

    client = CircusClient(endpoint=settings.circus_endpoint, timeout=timeout)
    try:
        answer = client.call({"command": "quit", "properties": {"waiting": False}})
    except Exception:  # CallError: no circusd here (a process run by hand)
        log.warning("no circusd answered the halt", extra={"endpoint": settings.circus_endpoint})
        return False
    finally:
        client.stop()
    return answer.get("status") == "ok"


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
    timeout_ms = int((timeout if timeout is not None else wait + 5.0) * 1000)
    # A REQ whose only pipe was dropped (a refused CURVE handshake) blocks in send forever.
    request.setsockopt(zmq.SNDTIMEO, timeout_ms)
    unavailable = f"no answer from the control server at {settings.control_command_endpoint}"
    try:
        try:
            request.send(encode(Command(name, wait=wait)))  # type: ignore[arg-type]
        except zmq.Again:
            raise ControlUnavailable(unavailable) from None
        if not request.poll(timeout_ms):
            raise ControlUnavailable(unavailable)
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
    # A fleet at a glance: live processes per stage on each host (reports name the host by
    # its `host` setting), and each ledger's backlog by its host.
    hosts: dict[str, dict[str, int]] = {}
    ledger_backlogs: dict[str, int] = {}


def summarize(reply: Reply) -> MeshSummary:
    def total(stage: str, counter: str) -> float:
        return sum(r.counters.get(counter, 0) for r in reply.reports if r.stage == stage)

    processes: dict[str, int] = {}
    hosts: dict[str, dict[str, int]] = {}
    for report in reply.reports:
        processes[report.stage] = processes.get(report.stage, 0) + 1
        stages = hosts.setdefault(report.host, {})
        stages[report.stage] = stages.get(report.stage, 0) + 1
    ledgers = [r for r in reply.reports if r.stage == "ledger"]
    ledger_backlogs: dict[str, int] = {}
    for ledger in ledgers:
        backlog = int(ledger.counters.get("backlog", 0))
        ledger_backlogs[ledger.host] = ledger_backlogs.get(ledger.host, 0) + backlog
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
        hosts={host: dict(sorted(stages.items())) for host, stages in sorted(hosts.items())},
        ledger_backlogs=dict(sorted(ledger_backlogs.items())),
    )
