"""Child processes for the bench: started with timeouts, read line by line, always stopped.

Also the two Linux /proc readings the bench needs: a process's own CPU time (utime + stime,
children excluded) and the loopback TCP ports a process listens on.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, NoReturn, Self

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (its threads included, its children not)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is the state (field 3 of stat); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _socket_inodes(pid: int) -> set[str]:
    inodes: set[str] = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def listening_ports(pid: int) -> set[int]:
    """The 127.0.0.1 TCP ports on which `pid` holds a listening socket."""
    inodes = _socket_inodes(pid)
    ports: set[int] = set()
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        cols = line.split()
        local, state, inode = cols[1], cols[3], cols[9]
        host, port = local.split(":")
        if state == "0A" and inode in inodes and host == "0100007F":
            ports.add(int(port, 16))
    return ports


_TCP_STATES = {"01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1",
               "05": "FIN_WAIT2", "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT",
               "09": "LAST_ACK", "0A": "LISTEN", "0B": "CLOSING"}


def tcp_states(pid: int) -> Counter[str]:
    """How many of `pid`'s IPv4 TCP sockets are in each state (ESTABLISHED, CLOSE_WAIT, ...)."""
    inodes = _socket_inodes(pid)
    states: Counter[str] = Counter()
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        cols = line.split()
        if cols[9] in inodes:
            states[_TCP_STATES.get(cols[3], cols[3])] += 1
    return states


def tcp_ext_counters(*names: str) -> dict[str, int]:
    """Named TcpExt counters of this network namespace (e.g. ListenOverflows), from /proc/net/netstat."""
    lines = Path("/proc/net/netstat").read_text().splitlines()
    for header, values in zip(lines[::2], lines[1::2], strict=False):
        if header.startswith("TcpExt:"):
            table = dict(zip(header.split()[1:], (int(v) for v in values.split()[1:]), strict=False))
            return {name: table.get(name, 0) for name in names}
    return dict.fromkeys(names, 0)


class Line(str):
    """A line of a child's stdout that also knows when the bench read it (`time.monotonic()`)."""

    at: float

    def __new__(cls, text: str, at: float) -> Self:
        line = super().__new__(cls, text)
        line.at = at
        return line


class Child:
    """One subprocess: stdout lines arrive on a queue, stderr goes to a file kept for errors."""

    def __init__(self, name: str, argv: Sequence[str], cwd: Path, stdin: bool = False,
                 env: Mapping[str, str] | None = None) -> None:
        self.name = name
        self._stderr = tempfile.TemporaryFile(prefix=f"bench-{name}-")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            list(argv), cwd=cwd, stdout=subprocess.PIPE, stderr=self._stderr,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL, text=True, bufsize=1,
            env={**os.environ, **env} if env else None,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, args=(self.proc.stdout,),
                                        name=f"bench:{name}:stdout", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self, stream: IO[str] | None) -> None:
        assert stream is not None
        for line in stream:
            self.lines.put(Line(line.rstrip("\n"), time.monotonic()))
        self.lines.put(None)

    def expect(self, matches: Callable[[str], bool], timeout: float) -> str:
        """The first stdout line for which `matches` is true; TimeoutError or EOFError otherwise.
        It is a `Line`: its `at` is when the reader thread got it, not when it was matched."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.name}: no expected output within {timeout:.0f} s")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise EOFError(f"{self.name} exited ({self.proc.poll()}): {self.stderr_tail()}")
            if matches(line):
                return line

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def stderr_tail(self, lines: int = 5) -> str:
        self._stderr.seek(0)
        text = self._stderr.read().decode(errors="replace").strip().splitlines()
        return " | ".join(text[-lines:]) or "(no stderr)"

    def stderr_lines(self) -> list[str]:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace").splitlines()

    def stop(self, grace: float = 3.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(grace)
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self._stderr.close()


class Children:
    """Holds every child; stops them all (newest first) on exit, also after Ctrl-C or an error."""

    def __init__(self) -> None:
        self._children: list[Child] = []

    def start(self, name: str, argv: Sequence[str], cwd: Path, stdin: bool = False,
              env: Mapping[str, str] | None = None) -> Child:
        child = Child(name, argv, cwd, stdin, env)
        self._children.append(child)
        return child

    def stop(self, child: Child) -> None:
        child.stop()
        if child in self._children:
            self._children.remove(child)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for child in reversed(self._children):
            try:
                child.stop()
            except Exception:  # noqa: BLE001 - keep stopping the others
                child.proc.kill()
        self._children.clear()


def run_bench(main: Callable[[], int]) -> NoReturn:
    """Run a benchmark's main(): Ctrl-C ends it with 130 once Children stopped every subprocess."""
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; every subprocess was stopped", file=sys.stderr)
        sys.exit(130)
