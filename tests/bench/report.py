"""Results of one bench run, the Markdown table and the goal checks (pure: no I/O but `str`s)."""

from __future__ import annotations

from dataclasses import dataclass, field

GIB = 1 << 30


@dataclass
class TransferResult:
    mbps: float | None = None  # 10**6 bytes per wall-clock second
    cpu_per_gib: float | None = None  # the forwarding process's CPU seconds per GiB; None for (a)
    sim_cpu_per_gib: float | None = None
    client_cpu_per_gib: float | None = None  # the bench process's own CPU (its HTTP client)
    error: str | None = None


@dataclass
class LatencyResult:
    p50_ms: float | None = None
    p99_ms: float | None = None
    error: str | None = None


@dataclass
class Row:
    key: str  # "a", "b", "c", "d"
    label: str
    download: TransferResult = field(default_factory=TransferResult)
    upload: TransferResult = field(default_factory=TransferResult)
    new_conn: LatencyResult = field(default_factory=LatencyResult)
    keepalive: LatencyResult = field(default_factory=LatencyResult)
    skipped: str | None = None  # why the whole row has no numbers


HEADER = ("path", "download MB/s", "download CPU s/GiB", "upload MB/s", "upload CPU s/GiB",
          "sim CPU s/GiB down/up", "p50/p99 new-conn ms", "p50/p99 keep-alive ms")


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


class _Notes:
    """Footnotes for FAILED cells, numbered in order of appearance."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def failed(self, where: str, error: str) -> str:
        self.lines.append(f"{len(self.lines) + 1}. {where}: {error}")
        return f"FAILED [{len(self.lines)}]"


def _cells(row: Row, notes: _Notes) -> list[str]:
    if row.skipped is not None:
        return [f"({row.key}) {row.label}: {row.skipped}", *["-"] * (len(HEADER) - 1)]
    cells = [f"({row.key}) {row.label}"]
    for name, t in (("download", row.download), ("upload", row.upload)):
        if t.error is not None:
            cells += [notes.failed(f"({row.key}) {name}", t.error), "-"]
        else:
            cells += [_num(t.mbps, 0), _num(t.cpu_per_gib, 2)]
    cells.append(f"{_num(row.download.sim_cpu_per_gib, 2)} / {_num(row.upload.sim_cpu_per_gib, 2)}")
    for name, lat in (("new-conn latency", row.new_conn), ("keep-alive latency", row.keepalive)):
        if lat.error is not None:
            cells.append(notes.failed(f"({row.key}) {name}", lat.error))
        else:
            cells.append(f"{_num(lat.p50_ms, 2)} / {_num(lat.p99_ms, 2)}")
    return cells


def table(rows: list[Row]) -> str:
    notes = _Notes()
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(_cells(row, notes)) + " |" for row in rows]
    if notes.lines:
        lines += ["", "Failures:", *notes.lines]
    return "\n".join(lines)


def _goal(name: str, ours: float | None, theirs: float | None, ok: bool | None) -> str:
    if ours is None or theirs is None or ok is None:
        return f"MISS  {name}: no number to compare (b={_num(ours, 2)}, c={_num(theirs, 2)})"
    return f"{'PASS' if ok else 'MISS'}  {name}: b={ours:.2f}, c={theirs:.2f}"


def goals(b: Row, c: Row) -> list[str]:
    """The kubetray-vs-stock-client goals, one PASS/MISS line each."""

    def cmp(x: float | None, y: float | None, test: bool) -> bool | None:
        return None if x is None or y is None else test

    out = []
    for name, ours, theirs in (("download MB/s: b >= c", b.download.mbps, c.download.mbps),
                               ("upload MB/s: b >= c", b.upload.mbps, c.upload.mbps)):
        out.append(_goal(name, ours, theirs, cmp(ours, theirs, (ours or 0) >= (theirs or 0))))
    bd, cd = b.download.cpu_per_gib, c.download.cpu_per_gib
    out.append(_goal("download CPU s/GiB: b <= c", bd, cd, cmp(bd, cd, (bd or 0) <= (cd or 0))))
    bu, cu = b.upload.cpu_per_gib, c.upload.cpu_per_gib
    out.append(_goal("upload CPU s/GiB: b <= c/2", bu, cu, cmp(bu, cu, (bu or 0) <= (cu or 0) / 2)))
    bl, cl = b.new_conn.p50_ms, c.new_conn.p50_ms
    out.append(_goal("p50 new-conn ms: b <= c", bl, cl, cmp(bl, cl, (bl or 0) <= (cl or 0))))
    return out


def notes(rows: list[Row]) -> list[str]:
    """Context a reader needs to compare the rows fairly."""
    out = []
    b = rows[1]
    if b.download.client_cpu_per_gib is not None and b.upload.client_cpu_per_gib is not None:
        out.append(f"(c)'s CPU includes its HTTP client (same code as the bench's); in (b) that client "
                   f"runs in the bench process and cost {b.download.client_cpu_per_gib:.2f} s/GiB down, "
                   f"{b.upload.client_cpu_per_gib:.2f} s/GiB up, not counted in (b)'s CPU.")
    return out
