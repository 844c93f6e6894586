"""A process's control link (common/control.py, `ControlLink`) over real sockets, with no
control server to talk to: it sleeps until something is due, and stops at once."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from common.config import load_settings
from common.control import ControlLink


def voluntary_switches(thread_id: int) -> int:
    """How often the thread has gone to sleep (Linux: /proc/self/task/<tid>/status)."""
    status = Path(f"/proc/self/task/{thread_id}/status").read_text()
    return int(status.split("voluntary_ctxt_switches:")[1].split()[0])


def test_an_idle_link_sleeps_until_a_report_is_due_and_stops_at_once(tmp_path: Path):
    reports: list[float] = []
    link = ControlLink(
        load_settings({}, data_dir=str(tmp_path)),
        "test",
        counters=lambda: reports.append(time.monotonic()) or {},
    ).start()
    time.sleep(0.5)  # its sockets are open
    thread_id = link._thread.native_id
    assert thread_id is not None
    before = voluntary_switches(thread_id)
    time.sleep(3.0)
    woke = voluntary_switches(thread_id) - before
    # A report a second (a wake-up and the send), not a look every 100 ms (30 and more).
    assert len(reports) >= 2 and woke <= 12, (len(reports), woke)
    # stop() then waits for the context's linger (its report queue, with no control
    # server); the link's thread itself ends at once: woken, not left to its next report.
    stopper = threading.Thread(target=link.stop)
    stopper.start()
    link._thread.join(timeout=0.5)
    assert not link._thread.is_alive()
    stopper.join(timeout=10)
    assert not stopper.is_alive()
    link.stop()  # a second stop changes nothing
