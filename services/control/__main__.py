"""Control server: owns the pipeline state, hears every process, answers the CLI.

Patterns: last value cache for the state (XPUB re-sends it to each new subscriber, plus a
re-broadcast every second), heartbeats for the reports, and an asynchronous ROUTER for
commands so a state change can wait for the frontends' confirmation without stalling.

    state     XPUB    bind  settings.control_state_endpoint    -> every process (SUB)
    reports   PULL    bind  settings.control_report_endpoint   <- every process (PUSH)
    commands  ROUTER  bind  settings.control_command_endpoint  <- ingest CLI (REQ)

The state survives a restart of this process (a small file in the data folder), so a crash
during a drain never turns writes back on.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
import zmq

from common.config import Settings, load_settings
from common.control import (
    CONTROL_BYTES,
    REPORT_SECONDS,
    Command,
    Halt,
    Reply,
    Report,
    State,
    StateName,
    decode_or_drop,
    encode,
    quit_circus,
)
from common.lifecycle import StopFlag, configure_logging
from common.sockets import MeshSockets

log = logging.getLogger("control")

# A process whose last report is older than this is taken as gone.
LIVE_SECONDS = 3 * REPORT_SECONDS
# The processes that apply a state to their host's journal gate, so must confirm it.
GATE_KEEPERS = ("frontend", "ledger")
COMMAND_STATES: dict[str, StateName] = {
    "stop-writes": "stopped",
    "drain": "draining",
    "resume": "accepting",
}


class StateFile:
    """The current state, written atomically so a crash leaves the old or the new one."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> State:
        try:
            return msgspec.json.decode(self.path.read_bytes(), type=State)
        except FileNotFoundError:
            return State("accepting", 0)

    def save(self, state: State) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".part")
        with open(partial, "wb") as f:
            f.write(msgspec.json.encode(state))
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, self.path)


class Pipeline:
    """The state and what the processes last reported; no sockets, so tests drive it."""

    def __init__(self, state_file: StateFile, now: Callable[[], float] = time.monotonic) -> None:
        self._file = state_file
        self._now = now
        # Looks are counted per start (boot): nothing about them is kept in the file.
        saved = state_file.load()
        self.state = State(saved.name, saved.seq, look=0, boot=secrets.randbits(31) + 1)
        self._reports: dict[tuple[str, str, int], tuple[Report, float]] = {}

    def change(self, name: StateName) -> State:
        self.state = msgspec.structs.replace(self.state, name=name, seq=self.state.seq + 1)
        self._file.save(State(self.state.name, self.state.seq))
        log.info("state changed", extra={"state": name, "seq": self.state.seq})
        return self.state

    def new_look(self) -> State:
        """Count a "look" command: every ledger's next look at its journal follows it."""
        self.state = msgspec.structs.replace(self.state, look=self.state.look + 1)
        return self.state

    def record(self, report: Report) -> None:
        self._reports[(report.stage, report.host, report.pid)] = (report, self._now())

    def live(self, stage: str | None = None) -> list[Report]:
        cutoff = self._now() - LIVE_SECONDS
        for key, (_, heard) in list(self._reports.items()):
            if heard < cutoff:
                del self._reports[key]
        return [r for r, _ in self._reports.values() if stage is None or r.stage == stage]

    def unconfirmed(self, seq: int) -> list[Report]:
        """Live frontend processes (workers and ledgers: each closes or opens its host's
        journal gate) that have not yet applied state `seq`."""
        return [r for r in self.live() if r.stage in GATE_KEEPERS and r.state_seq < seq]


class Pending(msgspec.Struct):
    identity: bytes
    seq: int
    deadline: float


class Halting(msgspec.Struct):
    """A `down` waiting for every other host to stop (docs/architecture.md, "Several
    hosts"): each of `hosts` must say it heard the Halt (a report with "halted"), then fall
    silent. A host that only falls silent (a cut link) is not taken as stopped."""

    identity: bytes
    halt: Halt
    hosts: set[str]
    deadline: float
    confirmed: set[str] = msgspec.field(default_factory=set)

    def missing(self, live: list[Report]) -> list[str]:
        still = {r.host for r in live}
        return sorted(h for h in self.hosts if h not in self.confirmed or h in still)


def run(settings: Settings, stop: StopFlag) -> None:
    sockets = MeshSockets(settings)
    states = sockets.bind(zmq.XPUB, settings.control_state_endpoint, max_bytes=CONTROL_BYTES)
    states.setsockopt(zmq.XPUB_VERBOSE, 1)
    reports = sockets.bind(zmq.PULL, settings.control_report_endpoint, max_bytes=CONTROL_BYTES)
    commands = sockets.bind(zmq.ROUTER, settings.control_command_endpoint, max_bytes=CONTROL_BYTES)

    pipeline = Pipeline(StateFile(settings.data_path / "control-state.json"))
    poller = zmq.Poller()
    for socket in (states, reports, commands):
        poller.register(socket, zmq.POLLIN)
    pending: list[Pending] = []
    halting: list[Halting] = []
    next_broadcast = 0.0
    log.info("control up", extra={"state": pipeline.state.name, "seq": pipeline.state.seq})
    try:
        while not stop:
            events = dict(poller.poll(100))

            # A new subscriber: give it the current state at once (last value cache).
            if states in events:
                while states.poll(0):
                    states.recv()
                next_broadcast = 0.0

            # Heartbeats from every process.
            while reports in events and reports.poll(0):
                message = decode_or_drop(reports.recv(), log, "control reports")
                if isinstance(message, Report):
                    pipeline.record(message)
                    for down in halting:
                        if message.counters.get("halted", -1) >= down.halt.seq:
                            down.confirmed.add(message.host)

            # Commands from the CLI: [identity, empty, command] from a REQ socket; any other
            # shape is dropped, never answered (a ROUTER cannot answer a malformed peer).
            while commands in events and commands.poll(0):
                frames = commands.recv_multipart()
                if len(frames) != 3 or frames[1]:
                    log.warning("dropped a malformed command", extra={"frames": len(frames)})
                    continue
                identity, _, frame = frames
                command = decode_or_drop(frame, log, "control commands")
                if isinstance(command, Command) and command.name == "down":
                    halting.append(_halt(settings, pipeline, identity, command.wait))
                    next_broadcast = 0.0
                    continue
                before = pipeline.state
                answer = _handle(pipeline, command, identity, pending)
                if pipeline.state != before:
                    next_broadcast = 0.0  # a new state or look: publish it now
                if answer is not None:
                    commands.send_multipart([identity, b"", encode(answer)])

            # State changes waiting for every live frontend to confirm.
            for wait in list(pending):
                missing = pipeline.unconfirmed(wait.seq)
                if missing and time.monotonic() < wait.deadline:
                    continue
                pending.remove(wait)
                detail = (
                    f"{len(missing)} frontend/ledger process(es) did not confirm: "
                    + ", ".join(f"{r.host}/{r.pid}" for r in missing)
                    if missing
                    else ""
                )
                reply = Reply(not missing, pipeline.state, detail, pipeline.live())
                commands.send_multipart([wait.identity, b"", encode(reply)])

            # A fleet's `down`: answered once every other host stopped, then this host.
            for down in list(halting):
                missing = down.missing(pipeline.live())
                if missing and time.monotonic() < down.deadline:
                    continue
                halting.remove(down)
                if missing:
                    detail = "these hosts did not confirm they stopped: " + ", ".join(missing)
                    reply = Reply(False, pipeline.state, detail, pipeline.live())
                    commands.send_multipart([down.identity, b"", encode(reply)])
                    continue
                _stop_own_watchers(settings)
                detail = "stopped: " + ", ".join([*sorted(down.hosts), settings.host_name])
                reply = Reply(True, pipeline.state, detail, [])
                commands.send_multipart([down.identity, b"", encode(reply)])
                quit_circus(settings)  # this host last: circusd stops this process too

            if time.monotonic() >= next_broadcast:
                next_broadcast = time.monotonic() + REPORT_SECONDS
                states.send(encode(pipeline.state))
                for down in halting:
                    states.send(encode(down.halt))
    finally:
        sockets.close()
        log.info("control stopped")


def _halt(settings: Settings, pipeline: Pipeline, identity: bytes, wait: float) -> Halting:
    """Start a fleet's `down`: every host heard from, but this one, is told to stop."""
    others = {r.host for r in pipeline.live()} - {settings.host_name}
    halt = Halt(pipeline.state.seq, spare=settings.host_name)
    log.info("halting the fleet", extra={"hosts": sorted(others), "seq": halt.seq})
    return Halting(identity, halt, others, time.monotonic() + wait)


def _stop_own_watchers(settings: Settings, timeout: float = 90.0) -> None:
    """Stop every other watcher of this host's circusd, waiting for each (so `down`
    answers only once they are gone); circusd's quit then stops this process."""
    from circus.client import CircusClient  # only `down` needs it

    client = CircusClient(endpoint=settings.circus_endpoint, timeout=timeout)
    try:
        watchers = client.call({"command": "list", "properties": {}}).get("watchers", [])
        for name in watchers:
            if name != "control":
                client.call({"command": "stop", "properties": {"name": name, "waiting": True}})
    except Exception:  # CallError: not under Circus (run by hand)
        log.warning("could not stop this host's watchers", exc_info=True)
    finally:
        client.stop()


def _handle(
    pipeline: Pipeline, command: object, identity: bytes, pending: list[Pending]
) -> Reply | None:
    """Answer now (a Reply), or change the state and answer once confirmed (None)."""
    if not isinstance(command, Command):
        return Reply(False, pipeline.state, f"not a command: {command}")
    if command.name == "status":
        return Reply(True, pipeline.state, "", pipeline.live())
    if command.name == "look":
        return Reply(True, pipeline.new_look())
    state = pipeline.change(COMMAND_STATES[command.name])
    pending.append(Pending(identity, state.seq, time.monotonic() + command.wait))
    return None


def main() -> None:
    settings = load_settings()
    configure_logging(settings, "control")
    run(settings, StopFlag.install())


if __name__ == "__main__":
    main()
