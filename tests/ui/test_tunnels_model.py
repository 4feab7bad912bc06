"""The tunnels window's table without Qt: rows, filter, sort, and updates from snapshots and stats."""

from __future__ import annotations

from dataclasses import dataclass

from trayapp.engine.runtime import TunnelView
from trayapp.model import AutoSource, ResourceType, Rule, TunnelState, TunnelStats
from trayapp.ui.tunnels_model import Column, TunnelTable, human_bytes

from .test_menu_model import API, TLS, WEB, snap, view


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def table_of(*views: TunnelView) -> tuple[TunnelTable, Clock]:
    clock = Clock()
    table = TunnelTable(clock)
    table.apply_snapshot(snap(*views))
    return table, clock


def names(table: TunnelTable) -> list[str]:
    return [row.name for row in table.rows()]


def test_a_row_has_every_column() -> None:
    table, clock = table_of(view(WEB, TunnelState.FORWARDING, 8080, "web-7d9-x2k"))
    (row,) = table.rows()
    assert [row.text(column) for column in Column if column is not Column.SINCE] == [
        "forwarding", "web", "kind-dev", "localhost:8080", "svc/web :80 in default", "web-7d9-x2k",
        "0 open, 0 in all", "0 B", "0 B"]
    assert row.url == "http://localhost:8080/" and row.since == clock.now
    assert [column.title for column in Column] == ["State", "Name", "Context", "Local address", "Target", "Pod",
                                                   "Connections", "In", "Out", "Since"]
    waiting, _ = table_of(view(API, TunnelState.WAITING, None, reason="No pod of statefulset api is ready yet."))
    (row,) = waiting.rows()
    assert (row.address, row.url, row.pod, row.reason) == ("", None, "", "No pod of statefulset api is ready yet.")


def test_human_bytes() -> None:
    assert [human_bytes(n) for n in (0, 512, 1536, 5 * 1024**2 + 1, 3 * 1024**4)] == [
        "0 B", "512 B", "1.5 KB", "5.0 MB", "3072.0 GB"]


def test_stats_update_their_row_and_tunnels_that_went_away_are_forgotten() -> None:
    table, _ = table_of(view(WEB, TunnelState.FORWARDING, 8080, "w"), view(TLS, TunnelState.FORWARDING, 8443, "g"))
    assert table.apply_stats("ctx/web", TunnelStats(2, 5, 3 * 1024, 100))
    web = next(row for row in table.rows() if row.name == "web")
    assert (web.text(Column.CONNECTIONS), web.text(Column.BYTES_IN), web.text(Column.BYTES_OUT)) == (
        "2 open, 5 in all", "3.0 KB", "100 B")
    assert not table.apply_stats("ctx/nothing", TunnelStats(1, 1, 1, 1))
    table.apply_snapshot(snap(view(TLS, TunnelState.FORWARDING, 8443, "g")))
    table.apply_snapshot(snap(view(WEB, TunnelState.FORWARDING, 8080, "w")))  # a new tunnel: counts from zero
    assert table.rows()[0].stats == TunnelStats()


def test_since_is_when_the_tunnel_entered_its_state() -> None:
    table, clock = table_of(view(WEB, TunnelState.WAITING, 8080))
    began = clock.now
    clock.now += 60
    table.apply_snapshot(snap(view(WEB, TunnelState.WAITING, 8080)))
    assert table.rows()[0].since == began  # same state: same since
    clock.now += 60
    table.apply_snapshot(snap(view(WEB, TunnelState.FORWARDING, 8080, "w")))
    assert table.rows()[0].since == began + 120


def test_filter_matches_every_word_anywhere_in_the_row() -> None:
    table, _ = table_of(
        view(WEB, TunnelState.FORWARDING, 8080, "web-7d9-x2k"),
        view(API, TunnelState.WAITING, 9090),
        view(TLS, TunnelState.FAILED, reason="gone"),
    )
    table.set_filter("edge")  # the namespace, in the target column
    assert names(table) == ["deploy/gateway :8443"]
    table.set_filter("WEB x2k")
    assert names(table) == ["web"]
    table.set_filter("waiting 9090")
    assert names(table) == ["sts/api :grpc"]
    table.set_filter("nothing like it")
    assert names(table) == [] and table.total == 3
    table.set_filter("  ")
    assert len(names(table)) == 3


def test_sort_by_any_column_numbers_as_numbers_states_by_urgency() -> None:
    def rule(name: str, port: int) -> Rule:
        return Rule(ResourceType.SERVICE, name, port, name=name)

    table, _ = table_of(
        view(rule("b", 9000), TunnelState.FORWARDING, 9000, "b-1"),
        view(rule("a", 10000), TunnelState.FAILED, 10000),
        view(rule("c", 800), TunnelState.WAITING, 800),
        view(Rule(ResourceType.POD, "d", 1, name="d", auto=True, source=AutoSource.DEBUG), TunnelState.STOPPED),
    )
    assert names(table) == ["a", "b", "c", "d"]  # by name at first
    table.sort_by(Column.STATE)
    assert names(table) == ["a", "c", "b", "d"]  # failed, waiting, forwarding, stopped
    table.sort_by(Column.ADDRESS)
    assert names(table) == ["c", "b", "a", "d"]  # by port number, no address last
    table.apply_stats("ctx/b", TunnelStats(0, 1, 10, 5000))
    table.apply_stats("ctx/c", TunnelStats(0, 1, 2000, 7))
    table.sort_by(Column.BYTES_IN, descending=True)
    assert names(table)[:2] == ["c", "b"]
    table.sort_by(Column.BYTES_OUT, descending=True)
    assert names(table)[:2] == ["b", "c"]


@dataclass(frozen=True)
class ViewWithContext(TunnelView):
    """A tunnel view as the pinned-contexts work extends it."""

    context: str = ""


def test_a_tunnel_names_its_own_context_when_it_has_one() -> None:
    pinned = ViewWithContext("staging/default/svc/db:5432@127.0.0.1", Rule(ResourceType.SERVICE, "db", 5432),
                             TunnelState.FORWARDING, 15432, "db-0", None, context="staging")
    table, _ = table_of(pinned, view(WEB, TunnelState.FORWARDING, 8080, "w"))
    assert {row.name: row.context for row in table.rows()} == {"svc/db :5432": "staging", "web": "kind-dev"}
    table.set_filter("staging")
    assert names(table) == ["svc/db :5432"]


def test_names_sort_as_people_count() -> None:
    table, _ = table_of(*(view(Rule(ResourceType.POD, "p", n, name=f"debug-shell-{n}"), TunnelState.FORWARDING, n)
                          for n in (10, 9, 100, 1)))
    assert names(table) == ["debug-shell-1", "debug-shell-9", "debug-shell-10", "debug-shell-100"]
