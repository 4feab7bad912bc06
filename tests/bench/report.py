"""Results of one bench run, the Markdown table and the goal checks (pure: no I/O but `str`s)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

GIB = 1 << 30
# "No worse than v4" between two runs of the same path on a machine shared with other work: a
# difference under this fraction is noise, not a result.
TOLERANCE = 0.10


@dataclass
class TransferResult:
    mbps: float | None = None  # 10**6 bytes per wall-clock second
    cpu_per_gib: float | None = None  # the forwarding process's CPU seconds per GiB; None for direct
    sim_cpu_per_gib: float | None = None
    client_cpu_per_gib: float | None = None  # the bench process's own CPU (its HTTP client)
    error: str | None = None


@dataclass
class LatencyResult:
    p50_ms: float | None = None
    p99_ms: float | None = None
    error: str | None = None


@dataclass
class BurstResult:
    ms: float | None = None  # from release until the last of the connections was answered
    error: str | None = None


@dataclass
class Row:
    rtt_ms: int
    kind: str  # "direct", "kubetray", "stock", "kubectl"
    variant: str  # kubetray's transport ("default" without --transport), kubectl's "ws"/"spdy", ""
    label: str
    download: TransferResult = field(default_factory=TransferResult)
    upload: TransferResult = field(default_factory=TransferResult)
    new_conn: LatencyResult = field(default_factory=LatencyResult)
    keepalive: LatencyResult = field(default_factory=LatencyResult)
    bursts: dict[int, BurstResult] = field(default_factory=dict)
    skipped: str | None = None  # why the whole row has no numbers

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.variant}" if self.variant else self.kind


HEADER = ("RTT ms", "path", "new-conn p50/p99 ms", "burst 10 ms", "burst 50 ms", "keep-alive p50 ms",
          "download MB/s", "download CPU s/GiB", "upload MB/s", "upload CPU s/GiB")
BURSTS = (10, 50)


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _cell_text(text: str, limit: int = 200) -> str:
    """One table cell's worth: no pipes or line breaks (they would break the Markdown table)."""
    flat = " ".join(text.replace("|", "/").split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


class _Notes:
    """Footnotes for FAILED cells, numbered in order of appearance."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def failed(self, where: str, error: str) -> str:
        self.lines.append(f"{len(self.lines) + 1}. {where}: {_cell_text(error, 400)}")
        return f"FAILED [{len(self.lines)}]"


def _cells(row: Row, notes: _Notes) -> list[str]:
    head = [str(row.rtt_ms), row.label]
    if row.skipped is not None:
        return [head[0], f"{row.label}: {_cell_text(row.skipped)}", *["-"] * (len(HEADER) - 2)]
    where = f"{row.rtt_ms} ms {row.label}"
    cells = list(head)
    lat = row.new_conn
    cells.append(notes.failed(f"{where} new-conn", lat.error) if lat.error is not None
                 else f"{_num(lat.p50_ms)} / {_num(lat.p99_ms)}")
    for n in BURSTS:
        burst = row.bursts.get(n, BurstResult())
        cells.append(notes.failed(f"{where} burst {n}", burst.error) if burst.error is not None
                     else _num(burst.ms, 0))
    ka = row.keepalive
    cells.append(notes.failed(f"{where} keep-alive", ka.error) if ka.error is not None else _num(ka.p50_ms, 2))
    for name, t in (("download", row.download), ("upload", row.upload)):
        if t.error is not None:
            cells += [notes.failed(f"{where} {name}", t.error), "-"]
        else:
            cells += [_num(t.mbps, 0), _num(t.cpu_per_gib, 2)]
    return cells


def table(rows: list[Row]) -> str:
    notes = _Notes()
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(_cells(row, notes)) + " |" for row in rows]
    if notes.lines:
        lines += ["", "Failures:", *notes.lines]
    return "\n".join(lines)


def _find(rows: list[Row], rtt: int, kind: str, variant: str | None = None) -> list[Row]:
    return [r for r in rows if r.rtt_ms == rtt and r.kind == kind and r.skipped is None
            and (variant is None or r.variant == variant)]


def _check(name: str, ours: float | None, theirs: float | None, ok: Callable[[float, float], bool],
           who: tuple[str, str]) -> str:
    if ours is None or theirs is None:
        return f"MISS  {name}: no number to compare ({who[0]}={_num(ours, 2)}, {who[1]}={_num(theirs, 2)})"
    return f"{'PASS' if ok(ours, theirs) else 'MISS'}  {name}: {who[0]}={ours:.2f}, {who[1]}={theirs:.2f}"


def _best(values: list[float | None], low: bool = True) -> float | None:
    known = [v for v in values if v is not None]
    return (min(known) if low else max(known)) if known else None


def old_goals(rows: list[Row]) -> list[str]:
    """kubetray (its default transport) against the stock client with the API at hand (0 ms)."""
    kubetray = _find(rows, 0, "kubetray")
    stock = _find(rows, 0, "stock")
    if not kubetray or not stock:
        return ["MISS  kubetray vs stock client at 0 ms: one of the two rows is missing"]
    b, c = kubetray[0], stock[0]
    who = ("kubetray", "stock")
    return [
        _check("0 ms download MB/s: kubetray >= stock", b.download.mbps, c.download.mbps,
               lambda x, y: x >= y, who),
        _check("0 ms upload MB/s: kubetray >= stock", b.upload.mbps, c.upload.mbps, lambda x, y: x >= y, who),
        _check("0 ms download CPU s/GiB: kubetray <= stock", b.download.cpu_per_gib, c.download.cpu_per_gib,
               lambda x, y: x <= y, who),
        _check("0 ms upload CPU s/GiB: kubetray <= stock/2", b.upload.cpu_per_gib, c.upload.cpu_per_gib,
               lambda x, y: x <= y / 2, who),
        _check("0 ms p50 new-conn ms: kubetray <= stock", b.new_conn.p50_ms, c.new_conn.p50_ms,
               lambda x, y: x <= y, who),
    ]


def issue_goals(rows: list[Row], cpu_resolution: float = 0.0) -> list[str]:
    """Issue 10's goals, per kubetray transport: against kubectl (the faster of its two rows) with
    the API 20 and 80 ms away, and against kubetray's own v4 transport at every round trip (v4
    itself, when other transports are there, is the baseline and not held to kubectl's goals).
    `cpu_resolution`: s/GiB one CPU tick is worth in this run; CPU within it counts as equal."""
    out: list[str] = []
    rtts = sorted({r.rtt_ms for r in rows})
    variants = sorted({r.variant for r in rows if r.kind == "kubetray"})
    loose = 1 + TOLERANCE
    for variant in variants:
        if variant == "v4" and len(variants) > 1:
            continue
        who = (f"kubetray {variant}", "kubectl")
        for rtt in (t for t in rtts if t > 0):
            ours = _find(rows, rtt, "kubetray", variant)
            theirs = _find(rows, rtt, "kubectl")
            if not ours or not theirs:
                out.append(f"MISS  {rtt} ms kubetray {variant} vs kubectl: a row is missing")
                continue
            b = ours[0]
            out.append(_check(f"{rtt} ms p50 new-conn: kubetray {variant} <= kubectl / 2", b.new_conn.p50_ms,
                              _best([r.new_conn.p50_ms for r in theirs]), lambda x, y: x <= y / 2, who))
            out.append(_check(f"{rtt} ms burst of 10: kubetray {variant} <= kubectl",
                              b.bursts.get(10, BurstResult()).ms,
                              _best([r.bursts.get(10, BurstResult()).ms for r in theirs]),
                              lambda x, y: x <= y, who))
        if variant == "default":
            continue
        who = (f"kubetray {variant}", "kubetray v4")
        for rtt in rtts:
            ours, v4 = _find(rows, rtt, "kubetray", variant), _find(rows, rtt, "kubetray", "v4")
            if not ours or not v4:
                out.append(f"MISS  {rtt} ms kubetray {variant} vs v4: a row is missing")
                continue
            b, a = ours[0], v4[0]
            for name, x, y in (("download MB/s", b.download.mbps, a.download.mbps),
                               ("upload MB/s", b.upload.mbps, a.upload.mbps)):
                out.append(_check(f"{rtt} ms {name}: {variant} >= v4 (-{TOLERANCE:.0%})", x, y,
                                  lambda x, y: x * loose >= y, who))
            for name, x, y in (("download CPU s/GiB", b.download.cpu_per_gib, a.download.cpu_per_gib),
                               ("upload CPU s/GiB", b.upload.cpu_per_gib, a.upload.cpu_per_gib)):
                out.append(_check(f"{rtt} ms {name}: {variant} <= v4 (+{TOLERANCE:.0%} "
                                  f"+ {cpu_resolution:.2f})", x, y,
                                  lambda x, y: x <= y * loose + cpu_resolution, who))
            if rtt == 0:  # nothing worse on a local cluster
                pairs = [("p50 new-conn ms", b.new_conn.p50_ms, a.new_conn.p50_ms),
                         ("p50 keep-alive ms", b.keepalive.p50_ms, a.keepalive.p50_ms)]
                pairs += [(f"burst of {n} ms", b.bursts.get(n, BurstResult()).ms,
                           a.bursts.get(n, BurstResult()).ms) for n in BURSTS]
                for name, x, y in pairs:
                    out.append(_check(f"0 ms {name}: {variant} <= v4 (+{TOLERANCE:.0%})", x, y,
                                      lambda x, y: x <= y * loose, who))
    return out


def notes(rows: list[Row]) -> list[str]:
    """Context a reader needs to compare the rows fairly."""
    out = []
    kubetray = _find(rows, 0, "kubetray")
    if kubetray:
        b = kubetray[0]
        if b.download.client_cpu_per_gib is not None and b.upload.client_cpu_per_gib is not None:
            out.append(f"The stock client's CPU includes its HTTP client (same code as the bench's); for "
                       f"kubetray and kubectl that client runs in the bench process and cost "
                       f"{b.download.client_cpu_per_gib:.2f} s/GiB down, {b.upload.client_cpu_per_gib:.2f} "
                       f"s/GiB up (0 ms, kubetray's row), not counted in their CPU.")
    return out
