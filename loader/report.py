"""What a load did: the counts and timings of one run (`LoadResult`), its summary as text or
JSON, and the rich progress bar shown while it runs."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

LATENCY_PERCENTILES = (50, 95, 99)


@dataclass
class LoadResult:
    """The counts of one run; the posting threads add to them under the Loader's lock."""

    accepted: int = 0
    rejected: int = 0
    unsent: int = 0  # never answered: the run stopped (mesh gone, key refused, interrupted)
    skipped: Counter[str] = field(default_factory=Counter)
    requests: int = 0  # POSTs that got an answer or failed to connect, retries included
    retried: int = 0  # POSTs sent again (after a 503, a connection error or a 5xx)
    retried_unavailable: int = 0  # of which after a 503
    latencies: list[float] = field(default_factory=list)  # seconds, accepted POSTs
    first_error: str | None = None  # the first rejection: status and body
    error: str | None = None  # why the run stopped early
    started: float = 0.0  # monotonic: the first POST
    finished: float = 0.0  # monotonic: the last answer
    drain_seconds: float | None = None  # after the last answer, until drained
    drained: bool | None = None  # None: not waited for

    @property
    def seconds(self) -> float:
        return max(self.finished - self.started, 1e-9)

    @property
    def articles_per_second(self) -> float:
        return self.accepted / self.seconds

    @property
    def end_to_end_seconds(self) -> float | None:
        if not self.drained or self.drain_seconds is None:
            return None
        return self.seconds + self.drain_seconds

    @property
    def ok(self) -> bool:
        """Everything was accepted (and committed, if waited for): exit status 0."""
        return (
            not self.rejected
            and not self.unsent
            and self.error is None
            and self.drained is not False
        )

    def latency_ms(self) -> dict[str, float | None]:
        """p50, p95 and p99 of the accepted POSTs, in milliseconds (None: no POST)."""
        cuts = percentiles(self.latencies)
        return {
            f"p{q}": None if cuts is None else round(cuts[q] * 1000, 1) for q in LATENCY_PERCENTILES
        }

    def summary(self) -> dict[str, Any]:
        """The summary as JSON (`--json`)."""
        out: dict[str, Any] = {
            "accepted": self.accepted,
            "rejected": self.rejected,
            "skipped": sum(self.skipped.values()),
            "skipped_reasons": dict(self.skipped),
            "unsent": self.unsent,
            "requests": self.requests,
            "retried_requests": self.retried,
            "retried_503": self.retried_unavailable,
            "seconds": round(self.seconds, 3),
            "articles_per_second": round(self.articles_per_second, 1),
            "latency_ms": self.latency_ms(),
            "first_error": self.first_error,
            "error": self.error,
        }
        if self.drained is not None:
            end_to_end = self.end_to_end_seconds
            out |= {
                "drained": self.drained,
                "drain_seconds": None
                if self.drain_seconds is None
                else round(self.drain_seconds, 3),
                "end_to_end_seconds": None if end_to_end is None else round(end_to_end, 3),
                "end_to_end_articles_per_second": None
                if end_to_end is None
                else round(self.accepted / end_to_end, 1),
            }
        return out

    def report(self) -> str:
        """The summary as text, for people."""
        lat = self.latency_ms()
        skipped = sum(self.skipped.values())
        reasons = ", ".join(f"{why}: {n}" for why, n in self.skipped.most_common())
        lines = [
            f"accepted  {self.accepted} articles in {self.seconds:.1f} s "
            f"({self.articles_per_second:.1f} articles/s)",
            f"rejected  {self.rejected}",
            f"skipped   {skipped}" + (f" ({reasons})" if reasons else ""),
            f"retried   {self.retried} requests of {self.requests} "
            f"({self.retried_unavailable} after 503)",
            f"latency   p50 {_ms(lat['p50'])} ms, p95 {_ms(lat['p95'])} ms, "
            f"p99 {_ms(lat['p99'])} ms (accepted POSTs)",
        ]
        if self.unsent:
            lines.append(f"unsent    {self.unsent}")
        if self.drained is not None:
            end_to_end = self.end_to_end_seconds
            if end_to_end is not None and self.drain_seconds is not None:
                lines.append(
                    f"drained   {self.drain_seconds:.1f} s after the last POST; end to end "
                    f"{end_to_end:.1f} s, {self.accepted / end_to_end:.1f} articles/s"
                )
            else:
                lines.append("drained   NO: the mesh still holds unprocessed articles")
        if self.first_error:
            lines.append(f"first rejection: {self.first_error}")
        if self.error:
            lines.append(f"stopped early: {self.error}")
        return "\n".join(lines)


def percentiles(values: Sequence[float]) -> dict[int, float] | None:
    """The 1st to 99th percentiles, by number, interpolated linearly between closest ranks
    (numpy's default); None for no values."""
    if not values:
        return None
    if len(values) == 1:  # statistics.quantiles needs two (before Python 3.13)
        return dict.fromkeys(range(1, 100), values[0])
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return dict(enumerate(cuts, start=1))


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


# --- Progress ----------------------------------------------------------------------------


class RateColumn(ProgressColumn):
    """Articles per second (rich's own speed column speaks of bytes or iterations)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("? articles/s" if speed is None else f"{speed:,.0f} articles/s")


def make_progress(console: Console | None = None, enabled: bool = True) -> Progress:
    """The progress bar, on stderr: stdout is for the summary (`--json` is parsed)."""
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[note]}"),
        console=console or Console(stderr=True),
        disable=not enabled,
    )


def add_task(progress: Progress, description: str, total: int | None = None) -> TaskID:
    """A task of `progress` with the `note` field the posting threads fill in (e.g. 503s)."""
    return progress.add_task(description, total=total, note="")
