"""Start and stop Google's Cloud Firestore emulator (`gcloud emulators firestore start`).

One launcher shared by the test fixtures and the benchmarks, so both run the store against
the same real emulator the same way:

    with FirestoreEmulator.start() as emulator:
        settings = load_settings(store="firestore", firestore_project=emulator.project,
                                 firestore_emulator_host=emulator.host)
        ...
        emulator.reset()  # delete every document of the project

The emulator is a Java process under a `gcloud` wrapper; it runs in its own process group so
`stop()` can end the wrapper and the JVM together (killing only the wrapper orphans the JVM).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import httpx

from common.sockets import free_tcp_port

DEFAULT_PROJECT = "demo-ingest"
# The JVM grows with data; 1 GiB held a 60k-write load (docs/measurements.md). Bounded so that a
# test run cannot take the memory of a 2-core machine shared with other work.
JAVA_TOOL_OPTIONS = "-Xmx1g"
START_TIMEOUT_SECONDS = 90.0


class EmulatorUnavailable(RuntimeError):
    """`gcloud` (with the Firestore emulator component) is not installed here."""


class EmulatorFailed(RuntimeError):
    """The emulator did not come up; the message carries the end of its log."""


def gcloud_path() -> str | None:
    return shutil.which("gcloud")


class FirestoreEmulator:
    def __init__(
        self, process: subprocess.Popen[bytes], host: str, project: str, log_path: Path
    ) -> None:
        self.process = process
        self.host = host  # "127.0.0.1:PORT", the value of FIRESTORE_EMULATOR_HOST
        self.project = project
        self.log_path = log_path
        self._http = httpx.Client(base_url=f"http://{host}", timeout=30.0)

    @classmethod
    def start(
        cls,
        project: str = DEFAULT_PROJECT,
        port: int | None = None,
        timeout: float = START_TIMEOUT_SECONDS,
    ) -> FirestoreEmulator:
        gcloud = gcloud_path()
        if gcloud is None:
            raise EmulatorUnavailable(
                "gcloud is not on PATH: the Firestore emulator (Debian package "
                "google-cloud-cli-firestore-emulator, with Java) is not installed here"
            )
        host = f"127.0.0.1:{port or free_tcp_port()}"
        log_fd, log_name = tempfile.mkstemp(prefix="firestore-emulator-", suffix=".log")
        env = dict(os.environ, JAVA_TOOL_OPTIONS=JAVA_TOOL_OPTIONS)
        # The emulator must not talk to a real project or inherit another emulator's address.
        env.pop("FIRESTORE_EMULATOR_HOST", None)
        process = subprocess.Popen(
            [gcloud, "emulators", "firestore", "start", f"--host-port={host}", "--quiet"],
            stdin=subprocess.DEVNULL,
            stdout=log_fd,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own process group: stop() ends gcloud and the JVM
        )
        os.close(log_fd)
        emulator = cls(process, host, project, Path(log_name))
        try:
            emulator._wait_ready(timeout)
        except BaseException:
            emulator.stop()
            raise
        return emulator

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise EmulatorFailed(
                    f"the Firestore emulator exited with {self.process.returncode}:\n"
                    + self.log_tail()
                )
            with contextlib.suppress(httpx.HTTPError):
                if self._http.get("/", timeout=1.0).text.strip() == "Ok":
                    return
            time.sleep(0.2)
        raise EmulatorFailed(
            f"the Firestore emulator was not ready on {self.host} after {timeout:.0f} s:\n"
            + self.log_tail()
        )

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def reset(self, project: str | None = None) -> None:
        """Delete every document of the project's default database (the emulator's API)."""
        response = self._http.delete(
            f"/emulator/v1/projects/{project or self.project}/databases/(default)/documents"
        )
        response.raise_for_status()

    def stop(self) -> None:
        """End the whole process group (gcloud wrapper and JVM), politely first."""
        self._http.close()
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=15)
        # The wrapper may be gone while the JVM in its group lingers: sweep the group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            self.log_path.unlink()

    def __enter__(self) -> FirestoreEmulator:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def main() -> None:
    """Run the emulator in the foreground until SIGTERM, for Circus.

    Circus watches this process, not `gcloud`: gcloud's wrapper starts a JVM that Circus's
    stop signal does not reach, and that would outlive the mesh. Here SIGTERM ends the
    emulator's whole process group.
    """
    import argparse

    parser = argparse.ArgumentParser(prog="python -m store.emulator")
    parser.add_argument("--host-port", required=True, help="127.0.0.1:PORT")
    args = parser.parse_args()
    host, _, port = args.host_port.rpartition(":")
    if host not in ("127.0.0.1", "localhost"):
        parser.error("the emulator binds loopback only: --host-port 127.0.0.1:PORT")
    stopping = False

    def request_stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    emulator = FirestoreEmulator.start(port=int(port))
    print(f"Firestore emulator ready on {emulator.host}", flush=True)
    try:
        while not stopping and emulator.process.poll() is None:
            time.sleep(0.5)
    finally:
        emulator.stop()


if __name__ == "__main__":
    main()
