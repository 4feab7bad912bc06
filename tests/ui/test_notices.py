"""NoticePolicy as transcripts: events in at given times, notices out, on a fake clock."""

from __future__ import annotations

import pytest

from trayapp.model import AutoSource, Event, EventKind, Notice, ResourceType
from trayapp.ui.notices import ANNOUNCE_EVERY, GATHER, PER_TUNNEL, STOP_HINT, NoticePolicy


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def policy(clock: Clock) -> NoticePolicy:
    return NoticePolicy(clock=clock)


def tunnel_event(kind: EventKind, name: str, message: str = "", context: str = "dev", **fields: object) -> Event:
    return Event(kind, message or f"{name}: {kind.value}.", context=context,
                 tunnel_id=f"{context}/default/svc/{name}:80@127.0.0.1", label=name, **fields)  # type: ignore[arg-type]


def fallback(name: str, context: str = "dev") -> Event:
    return tunnel_event(EventKind.FALLBACK, name,
                        f"{name} wanted 127.0.0.1:8080, but it is in use; it listens on 127.0.0.1:8081 instead.",
                        context, requested_local_port=8080, local_port=8081)


def reconnected(name: str, context: str = "dev") -> Event:
    return tunnel_event(EventKind.RECONNECTED, name,
                        f"{name} moved from pod {name}-old to pod {name}-7d9-x2k; 127.0.0.1:8080 stays the same.",
                        context, pod=f"{name}-7d9-x2k", old_pod=f"{name}-old")


def failed(name: str, context: str = "dev") -> Event:
    return tunnel_event(EventKind.FAILED, name, f"{name}: the cluster refused the credentials.", context)


def url(name: str) -> str:
    return f"http://localhost:8081/{name}"


def after(policy: NoticePolicy, clock: Clock, seconds: float) -> list[Notice]:
    clock.now += seconds
    return policy.flush()


def test_fallback_notice_names_both_ports_and_opens_the_tunnel(policy: NoticePolicy, clock: Clock) -> None:
    event = fallback("web")
    policy.admit(event, url("web"))
    assert policy.deadline() == clock.now + GATHER
    assert after(policy, clock, GATHER - 0.1) == []
    assert after(policy, clock, 0.1) == [Notice(
        "web wanted 8080; it is on 8081", event.message, sticky=False, url=url("web"),
        tunnel_id=event.tunnel_id)]
    assert policy.deadline() is None
    assert policy.flush() == []


def test_reconnected_notice_names_the_new_pod(policy: NoticePolicy, clock: Clock) -> None:
    event = reconnected("web")
    policy.admit(event, url("web"))
    [notice] = after(policy, clock, GATHER)
    assert notice == Notice("web moved to pod web-7d9-x2k", event.message, sticky=False, url=url("web"),
                            tunnel_id=event.tunnel_id)


def test_a_restarted_container_is_told_as_a_restart(policy: NoticePolicy, clock: Clock) -> None:
    event = tunnel_event(EventKind.RECONNECTED, "web", "The container of pod web-1 restarted; ...",
                         pod="web-1", old_pod="web-1")
    policy.admit(event, None)
    [notice] = after(policy, clock, GATHER)
    assert notice.title == "web: pod web-1 restarted"


def test_failure_is_sticky_and_untunnelled_failure_has_a_general_title(policy: NoticePolicy, clock: Clock) -> None:
    event = failed("db")
    general = Event(EventKind.FAILED, "The kubeconfig file is not valid YAML. kubetray keeps the current tunnels.")
    policy.admit(event, url("db"))
    policy.admit(general, None)
    assert after(policy, clock, GATHER) == [
        Notice("db failed", event.message, sticky=True, url=url("db"), tunnel_id=event.tunnel_id),
        Notice("kubetray: a problem", general.message, sticky=True, url=None, tunnel_id=None),
    ]


def test_context_switch_is_one_info_notice(policy: NoticePolicy, clock: Clock) -> None:
    event = Event(EventKind.CONTEXT, "The kubeconfig context changed from dev to prod: kubetray stopped 2 tunnels "
                  "and starts 2 for prod.", context="prod", previous_context="dev")
    policy.admit(event, None)
    assert after(policy, clock, GATHER) == [Notice("Switched to prod", event.message, sticky=False)]


@pytest.mark.parametrize("kind", [EventKind.FORWARDING, EventKind.WAITING, EventKind.STOPPED])
def test_routine_events_are_not_told(policy: NoticePolicy, clock: Clock, kind: EventKind) -> None:
    policy.admit(tunnel_event(kind, "web"), url("web"))
    assert policy.deadline() is None
    assert after(policy, clock, GATHER) == []


def test_one_notice_per_tunnel_per_half_minute(policy: NoticePolicy, clock: Clock) -> None:
    policy.admit(reconnected("web"), url("web"))
    assert len(after(policy, clock, GATHER)) == 1
    clock.now += 10
    policy.admit(reconnected("web"), url("web"))
    policy.admit(fallback("web"), url("web"))
    assert policy.deadline() is None  # both dropped: nothing to wake up for
    clock.now += PER_TUNNEL - 10 - GATHER  # exactly 30 s after the first one
    policy.admit(reconnected("web"), url("web"))
    [notice] = after(policy, clock, GATHER)
    assert notice.title == "web moved to pod web-7d9-x2k"


def test_other_tunnels_are_not_held_back_by_a_busy_one(policy: NoticePolicy, clock: Clock) -> None:
    policy.admit(reconnected("web"), url("web"))
    after(policy, clock, GATHER)
    policy.admit(reconnected("web"), url("web"))
    policy.admit(reconnected("api"), url("api"))
    assert [n.title for n in after(policy, clock, GATHER)] == ["api moved to pod api-7d9-x2k"]


def test_failure_after_good_news_gets_through_once(policy: NoticePolicy, clock: Clock) -> None:
    policy.admit(reconnected("web"), url("web"))
    assert len(after(policy, clock, GATHER)) == 1
    clock.now += 5
    policy.admit(failed("web"), url("web"))
    [notice] = after(policy, clock, GATHER)
    assert (notice.title, notice.sticky) == ("web failed", True)
    clock.now += 5
    policy.admit(failed("web"), url("web"))
    policy.admit(reconnected("web"), url("web"))
    assert policy.deadline() is None


def test_info_and_failure_in_the_same_moment_are_both_told(policy: NoticePolicy, clock: Clock) -> None:
    policy.admit(fallback("web"), url("web"))
    policy.admit(failed("web"), url("web"))
    assert [n.title for n in after(policy, clock, GATHER)] == ["web wanted 8080; it is on 8081", "web failed"]


def test_three_at_once_are_told_separately(policy: NoticePolicy, clock: Clock) -> None:
    for name in ("a", "b", "c"):
        policy.admit(reconnected(name), url(name))
    assert len(after(policy, clock, GATHER)) == 3


def test_more_than_three_at_once_become_one_summary(policy: NoticePolicy, clock: Clock) -> None:
    for name in ("web", "api", "auth"):
        policy.admit(reconnected(name), url(name))
    clock.now += 0.5  # still inside the gather window opened by the first one
    policy.admit(failed("db"), url("db"))
    policy.admit(failed("cache"), url("cache"))
    assert policy.deadline() == clock.now - 0.5 + GATHER
    assert after(policy, clock, 0.5) == [Notice(
        "kubetray: 5 tunnels changed",
        "3 tunnels moved to new pods and 2 failed. Tunnels: web, api, auth and 2 more.",
        sticky=True, url=None, tunnel_id=None)]


def test_summary_without_failures_is_not_sticky(policy: NoticePolicy, clock: Clock) -> None:
    for name in ("a", "b", "c", "d"):
        policy.admit(fallback(name), url(name))
    [notice] = after(policy, clock, GATHER)
    assert notice.title == "kubetray: 4 tunnels changed"
    assert notice.body == "4 tunnels fell back to other ports. Tunnels: a, b, c and 1 more."
    assert not notice.sticky


def test_summary_counts_problems_outside_tunnels(policy: NoticePolicy, clock: Clock) -> None:
    for name in ("a", "b", "c"):
        policy.admit(reconnected(name), url(name))
    policy.admit(Event(EventKind.FAILED, "The rules file has 2 errors."), None)
    [notice] = after(policy, clock, GATHER)
    assert notice.title == "kubetray: 4 changes and problems"
    assert notice.body == "3 tunnels moved to new pods and 1 other problem. Tunnels: a, b and c."
    assert notice.sticky


def test_events_after_the_window_start_a_new_one(policy: NoticePolicy, clock: Clock) -> None:
    policy.admit(reconnected("a"), url("a"))
    clock.now += GATHER + 0.5  # the UI's timer is late; the next event must not wait for it
    policy.admit(reconnected("b"), url("b"))
    assert policy.deadline() == clock.now - 0.5
    assert len(policy.flush()) == 2


def test_tunnels_of_a_new_context_fold_into_the_switch(policy: NoticePolicy, clock: Clock) -> None:
    switch = Event(EventKind.CONTEXT, "The kubeconfig context changed from dev to prod: kubetray stopped 3 tunnels "
                   "and starts 3 for prod.", context="prod", previous_context="dev")
    policy.admit(switch, None)
    clock.now += 0.4
    policy.admit(fallback("web", "prod"), url("web"))
    policy.admit(fallback("api", "prod"), url("api"))
    assert policy.deadline() == clock.now - 0.4 + GATHER
    assert after(policy, clock, GATHER - 0.4) == [Notice(
        "Switched to prod",
        switch.message + " Since then 2 tunnels fell back to other ports: web and api.",
        sticky=False, url=None, tunnel_id=None)]


def test_context_switch_waits_a_full_window_for_its_tunnels(policy: NoticePolicy, clock: Clock) -> None:
    policy.admit(reconnected("web", "dev"), url("web"))
    clock.now += 0.8
    switch = Event(EventKind.CONTEXT, "Switched.", context="prod", previous_context="dev")
    policy.admit(switch, None)
    assert policy.deadline() == clock.now + GATHER
    clock.now += 0.9
    policy.admit(failed("db", "prod"), url("db"))
    [told, web] = after(policy, clock, 0.1)
    assert told == Notice("Switched to prod", "Switched. Since then 1 tunnel failed: db.", sticky=True,
                          url=url("db"), tunnel_id=failed("db", "prod").tunnel_id)
    assert web.title == "web moved to pod web-7d9-x2k"


def test_many_tunnels_of_a_new_context_still_make_one_notice(policy: NoticePolicy, clock: Clock) -> None:
    policy.admit(Event(EventKind.CONTEXT, "Switched.", context="prod", previous_context="dev"), None)
    for name in ("a", "b", "c", "d", "e"):
        policy.admit(fallback(name, "prod"), url(name))
    policy.admit(failed("f", "prod"), url("f"))
    [notice] = after(policy, clock, GATHER)
    assert notice.body == ("Switched. Since then 5 tunnels fell back to other ports and 1 tunnel failed: "
                           "a, b, c and 3 more.")
    assert notice.sticky


def test_a_quick_second_switch_supersedes_the_first(policy: NoticePolicy, clock: Clock) -> None:
    policy.admit(Event(EventKind.CONTEXT, "To staging.", context="staging", previous_context="dev"), None)
    policy.admit(fallback("web", "staging"), url("web"))
    clock.now += 0.3
    policy.admit(Event(EventKind.CONTEXT, "To prod.", context="prod", previous_context="staging"), None)
    assert after(policy, clock, GATHER) == [Notice("Switched to prod", "To prod.")]


def test_disabled_drops_everything_and_clears_what_waits(policy: NoticePolicy, clock: Clock) -> None:
    policy.admit(failed("db"), url("db"))
    policy.enabled = False
    assert policy.deadline() is None
    policy.admit(failed("api"), url("api"))
    assert after(policy, clock, GATHER) == []
    policy.enabled = True
    policy.admit(failed("api"), url("api"))
    assert [n.title for n in after(policy, clock, GATHER)] == ["api failed"]


# ---- automatic tunnels are announced --------------------------------------------------------


def auto_event(kind: EventKind, name: str, source: AutoSource = AutoSource.SKAFFOLD, local_port: int = 8080,
               **fields: object) -> Event:
    return tunnel_event(kind, name, f"{name}: {kind.value}.", auto=True, source=source, local_port=local_port,
                        address="127.0.0.1", resource_type=ResourceType.SERVICE, resource_name=name,
                        namespace="default", port=80, **fields)


def test_a_new_automatic_tunnel_is_announced_once_with_its_object_port_source_and_stop(
    policy: NoticePolicy, clock: Clock
) -> None:
    first = auto_event(EventKind.FORWARDING, "web")
    policy.admit(first, url("web"))
    assert policy.deadline() == clock.now + GATHER
    (notice,) = after(policy, clock, GATHER)
    assert notice == Notice(
        "kubetray forwards web automatically",
        "svc/default/web port 80 is on localhost:8080, forwarded because Skaffold deployed it. " + STOP_HINT,
        url=url("web"), tunnel_id=first.tunnel_id)
    assert "choose \"Don't forward this automatically\" in its submenu" in notice.body
    # Later news of the same tunnel is not a new announcement.
    policy.admit(auto_event(EventKind.FORWARDING, "web"))
    clock.now += 3 * PER_TUNNEL
    policy.admit(auto_event(EventKind.WAITING, "web"))
    assert policy.deadline() is None and after(policy, clock, GATHER) == []


def test_a_fallback_is_part_of_the_announcement(policy: NoticePolicy, clock: Clock) -> None:
    policy.admit(auto_event(EventKind.FALLBACK, "web", AutoSource.ANNOTATION, local_port=4503,
                            requested_local_port=80))
    policy.admit(auto_event(EventKind.FORWARDING, "web", AutoSource.ANNOTATION, local_port=4503))
    (notice,) = after(policy, clock, GATHER)
    assert notice.body.startswith("svc/default/web port 80 is on localhost:4503 (it asked for 80), "
                                  "forwarded because it is annotated kubetray.dev/forward.")


def test_automatic_tunnels_appearing_together_make_one_notice(policy: NoticePolicy, clock: Clock) -> None:
    sources = [AutoSource.SKAFFOLD, AutoSource.DEBUG, AutoSource.SELECTOR] + [AutoSource.SKAFFOLD] * 4
    for number, source in enumerate(sources):
        policy.admit(auto_event(EventKind.FORWARDING, f"s{number}", source, local_port=9000 + number))
    (notice,) = after(policy, clock, GATHER)
    assert notice.title == "kubetray forwards 7 new automatic tunnels"
    assert notice.body.startswith("s0 on localhost:9000: Skaffold deployed it; s1 on localhost:9001: it is a pod in "
                                  "Skaffold debug mode; s2 on localhost:9002: it matches a selector in the rules "
                                  "file's auto.selectors; ")
    assert "and 2 more (see the kubetray menu). " + STOP_HINT in notice.body
    assert notice.url is None and not notice.sticky


def test_announcements_are_rate_limited_and_the_late_ones_grouped(policy: NoticePolicy, clock: Clock) -> None:
    policy.admit(auto_event(EventKind.FORWARDING, "a"))
    assert len(after(policy, clock, GATHER)) == 1
    clock.now += 1.0
    policy.admit(auto_event(EventKind.FORWARDING, "b", local_port=8081))
    clock.now += 5.0
    policy.admit(auto_event(EventKind.FORWARDING, "c", local_port=8082))
    told_at = clock.now - 6.0
    assert policy.deadline() == told_at + ANNOUNCE_EVERY
    assert after(policy, clock, GATHER) == []  # within the window after the last announcement
    clock.now = told_at + ANNOUNCE_EVERY
    (notice,) = policy.flush()
    assert notice.title == "kubetray forwards 2 new automatic tunnels"


def test_an_automatic_tunnel_gone_before_it_was_told_is_not_announced(policy: NoticePolicy, clock: Clock) -> None:
    policy.admit(auto_event(EventKind.FORWARDING, "blip"))
    policy.admit(auto_event(EventKind.STOPPED, "blip"))
    assert policy.deadline() is None and after(policy, clock, GATHER) == []
    # When it comes back, it is new again.
    policy.admit(auto_event(EventKind.WAITING, "blip"))
    (notice,) = after(policy, clock, GATHER)
    assert notice.title == "kubetray forwards blip automatically"


def test_user_tunnels_are_not_announced(policy: NoticePolicy, clock: Clock) -> None:
    policy.admit(tunnel_event(EventKind.FORWARDING, "web", local_port=8080))
    assert policy.deadline() is None


def test_turning_notices_off_drops_pending_announcements(policy: NoticePolicy, clock: Clock) -> None:
    policy.admit(auto_event(EventKind.FORWARDING, "web"))
    policy.enabled = False
    assert policy.deadline() is None and after(policy, clock, GATHER) == []


def test_a_listener_open_to_the_network_says_so(policy: NoticePolicy, clock: Clock) -> None:
    event = tunnel_event(EventKind.FALLBACK, "web", "web wanted 0.0.0.0:8080, but it is in use; "
                         "it listens on 0.0.0.0:8081 instead.", address="0.0.0.0", local_port=8081,
                         requested_local_port=8080)
    policy.admit(event)
    (notice,) = after(policy, clock, GATHER)
    assert notice.body.endswith("instead. (0.0.0.0:8081, open to your network.)")


def test_a_pinned_contexts_notice_names_its_context(policy: NoticePolicy, clock: Clock) -> None:
    policy.set_current_context("dev")
    policy.admit(tunnel_event(EventKind.RECONNECTED, "db", context="prod", pod="db-1", old_pod="db-0"))
    policy.admit(tunnel_event(EventKind.RECONNECTED, "web", context="dev", pod="web-2", old_pod="web-1"))
    clock.now += policy.gather
    titles = sorted(n.title for n in policy.flush())
    assert titles == ["prod: db moved to pod db-1", "web moved to pod web-2"]
