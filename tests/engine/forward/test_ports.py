"""Local port choice with real sockets on 127.0.0.1 and ::1; the errno decision as a pure function."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from collections.abc import Iterator

import pytest

from trayapp.engine.forward import ports
from trayapp.engine.forward.ports import Bound, bind_listener, fallback_ports, fallback_reason, refusal_for
from trayapp.errors import PortError
from trayapp.model import ResourceType, Rule

FALLBACK = list(range(4503, 4534))


# ---- helpers ------------------------------------------------------------------------------------


def occupy(port: int, host: str = "127.0.0.1") -> socket.socket | None:
    """Hold `port` with a plain listening socket; None if something else already holds it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    if os.name != "nt":  # as bind_listener does: a port in TIME_WAIT from an earlier test is free
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(1)
    except OSError:
        sock.close()
        return None
    return sock


@contextlib.contextmanager
def held(portlist: list[int], host: str = "127.0.0.1") -> Iterator[None]:
    socks = [s for s in (occupy(p, host) for p in portlist) if s is not None]
    try:
        yield
    finally:
        for sock in socks:
            sock.close()


def is_free(port: int, host: str = "127.0.0.1") -> bool:
    sock = occupy(port, host)
    if sock is None:
        return False
    sock.close()
    return True


def free_block(size: int = 11, host: str = "127.0.0.1") -> int:
    """A base port where base..base+size-1 are all free right now (well away from 4503-4533)."""
    hosts = [host, "::1"] if host == "127.0.0.1" and has_ipv6_loopback() else [host]  # the default binds both
    for base in range(20000, 60000, 97):
        probes = [occupy(p, h) for p in range(base, base + size) for h in hosts]
        for sock in probes:
            if sock is not None:
                sock.close()
        if all(probes):
            return base
    pytest.skip("no block of free ports found")


def assert_listening(bound: Bound, host: str = "127.0.0.1") -> None:
    assert bound.sock.getsockname()[1] == bound.port
    assert not bound.sock.getblocking()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as client:
        client.settimeout(2)
        client.connect((host, bound.port))


@pytest.fixture
def closing() -> Iterator[list[Bound]]:
    bounds: list[Bound] = []
    yield bounds
    for bound in bounds:
        bound.close()


def has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not has_ipv6_loopback(), reason="this machine has no IPv6 loopback")


# ---- fallback_ports (pure) ---------------------------------------------------------------------


def test_fallback_order() -> None:
    assert list(fallback_ports(8080)) == [8080, *range(8081, 8091), *FALLBACK, 0]


def test_fallback_skips_ports_above_65535() -> None:
    assert list(fallback_ports(65533)) == [65533, 65534, 65535, *FALLBACK, 0]


def test_fallback_has_no_repeats_inside_the_skaffold_range() -> None:
    candidates = list(fallback_ports(4500))
    assert candidates == [*range(4500, 4534), 0]
    assert len(candidates) == len(set(candidates))


def test_fallback_for_zero_or_out_of_range_request() -> None:
    assert list(fallback_ports(0)) == [*FALLBACK, 0]
    assert list(fallback_ports(70000)) == [*FALLBACK, 0]


# ---- fallback_reason (pure: the EACCES path is tested here, since the tests run as root) --------


def test_fallback_reason_in_use() -> None:
    assert fallback_reason(8080, errno.EADDRINUSE) == "8080 is in use"


def test_fallback_reason_privileged() -> None:
    assert fallback_reason(80, errno.EACCES) == "80 needs privileges"
    assert fallback_reason(80, errno.EPERM) == "80 needs privileges"


@pytest.mark.parametrize("code", [errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT, errno.EINVAL, None])
def test_other_errors_do_not_fall_back(code: int | None) -> None:
    assert fallback_reason(8080, code) is None


# ---- bind_listener with real sockets ------------------------------------------------------------


def test_requested_port_is_bound_and_kept(closing: list[Bound]) -> None:
    base = free_block(1)
    bound = bind_listener("127.0.0.1", base)
    closing.append(bound)
    assert (bound.port, bound.requested, bound.fell_back, bound.reasons) == (base, base, False, ())
    assert_listening(bound)
    # kept: nobody else can bind it now
    assert occupy(base) is None


def test_socket_options(closing: list[Bound]) -> None:
    bound = bind_listener("127.0.0.1", None)
    closing.append(bound)
    if os.name != "nt":
        assert bound.sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
    if hasattr(socket, "SO_REUSEPORT"):
        assert not bound.sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)


def test_in_use_falls_to_next(closing: list[Bound]) -> None:
    base = free_block()
    with held([base, base + 1]):
        bound = bind_listener("127.0.0.1", base)
        closing.append(bound)
    assert bound.port == base + 2
    assert bound.fell_back
    assert bound.reasons == (f"{base} is in use", f"{base + 1} is in use")
    assert_listening(bound)


def test_all_next_ten_in_use_goes_to_skaffold_range(closing: list[Bound]) -> None:
    base = free_block()
    # Free on both loopbacks, as the default address needs (other programs may hold one of them).
    first_free = next((p for p in FALLBACK if is_free(p) and (not has_ipv6_loopback() or is_free(p, "::1"))), None)
    if first_free is None:
        pytest.skip("4503-4533 all taken on this machine")
    with held(list(range(base, base + 11))):
        bound = bind_listener("127.0.0.1", base)
        closing.append(bound)
    assert bound.port == first_free
    assert bound.reasons[:11] == tuple(f"{p} is in use" for p in range(base, base + 11))
    assert_listening(bound)


def test_everything_in_use_lets_the_os_pick(closing: list[Bound]) -> None:
    base = free_block()
    with held([*range(base, base + 11), *FALLBACK]):
        bound = bind_listener("127.0.0.1", base)
        closing.append(bound)
    assert bound.port not in {*range(base, base + 11), *FALLBACK, 0}
    assert bound.fell_back
    assert len(bound.reasons) == 11 + len(FALLBACK)
    assert_listening(bound)


def test_taken_ports_are_skipped(closing: list[Bound]) -> None:
    base = free_block()
    bound = bind_listener("127.0.0.1", base, taken={base, base + 1})
    closing.append(bound)
    assert bound.port == base + 2
    assert bound.reasons == (
        f"{base} is used by another kubetray rule",
        f"{base + 1} is used by another kubetray rule",
    )


def test_taken_and_in_use_mix_in_order(closing: list[Bound]) -> None:
    base = free_block()
    with held([base + 1]):
        bound = bind_listener("127.0.0.1", base, taken={base})
        closing.append(bound)
    assert bound.port == base + 2
    assert bound.reasons == (f"{base} is used by another kubetray rule", f"{base + 1} is in use")


def test_none_lets_the_os_pick(closing: list[Bound]) -> None:
    bound = bind_listener("127.0.0.1", None)
    closing.append(bound)
    assert bound.port > 0
    assert bound.requested is None
    assert not bound.fell_back
    assert bound.reasons == ()
    assert_listening(bound)


def test_os_pick_avoids_taken_ports(closing: list[Bound]) -> None:
    first = bind_listener("127.0.0.1", None)
    first_port = first.port
    first.sock.close()
    # The OS tends to hand out a just-closed port again; promise it to another rule.
    bound = bind_listener("127.0.0.1", None, taken={first_port})
    closing.append(bound)
    assert bound.port != first_port


def test_two_rules_get_different_ports(closing: list[Bound]) -> None:
    base = free_block()
    one = bind_listener("127.0.0.1", base)
    closing.append(one)
    two = bind_listener("127.0.0.1", base)
    closing.append(two)
    assert (one.port, two.port) == (base, base + 1)
    assert two.reasons == (f"{base} is in use",)


def test_localhost_is_the_default_address(closing: list[Bound]) -> None:
    bound = bind_listener("localhost", None)
    closing.append(bound)
    assert bound.sock.family == socket.AF_INET
    assert bound.sock.getsockname()[0] == "127.0.0.1"
    assert [s.getsockname()[0] for s in bound.socks][1:] in ([], ["::1"])


@needs_ipv6
@pytest.mark.parametrize("address", ["127.0.0.1", "localhost"])
def test_the_default_address_listens_on_both_loopbacks_with_one_port(closing: list[Bound], address: str) -> None:
    base = free_block(1)
    bound = bind_listener(address, base)
    closing.append(bound)
    assert bound.port == base and not bound.fell_back
    assert sorted((s.family, s.getsockname()[1]) for s in bound.socks) == [
        (socket.AF_INET, base), (socket.AF_INET6, base)]
    assert_listening(bound, "127.0.0.1")
    assert_listening(bound, "::1")


@needs_ipv6
def test_a_port_busy_on_ipv6_only_is_not_free(closing: list[Bound]) -> None:
    base = free_block(2)
    with held([base], "::1"):
        bound = bind_listener("127.0.0.1", base)
        closing.append(bound)
        assert (bound.port, bound.reasons) == (base + 1, (f"{base} is in use",))
        assert is_free(base)  # the IPv4 half of the failed try was let go


@needs_ipv6
def test_an_explicit_ipv6_loopback_stays_ipv6_only(closing: list[Bound]) -> None:
    bound = bind_listener("::1", None)
    closing.append(bound)
    assert [s.family for s in bound.socks] == [socket.AF_INET6]
    assert is_free(bound.port) and not is_free(bound.port, "::1")


def test_without_an_ipv6_loopback_ipv4_alone_said_once(
    closing: list[Bound], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # 2001:db8::/32 is for documentation: no machine has it, so binding it fails as ::1 does
    # where IPv6 is off (EADDRNOTAVAIL), or the family is missing altogether (EAFNOSUPPORT).
    monkeypatch.setattr(ports, "IPV6_LOOPBACK", "2001:db8::1")
    monkeypatch.setattr(ports, "_told_no_ipv6", False)
    caplog.set_level("INFO", logger="trayapp.engine.forward.ports")
    first = bind_listener("127.0.0.1", None)
    closing.append(first)
    second = bind_listener("127.0.0.1", None)
    closing.append(second)
    assert [s.family for s in first.socks] == [s.family for s in second.socks] == [socket.AF_INET]
    assert_listening(first)
    told = [r.getMessage() for r in caplog.records if "no IPv6 loopback" in r.getMessage()]
    assert len(told) == 1 and "127.0.0.1 alone" in told[0]


# ---- automatic rules may not take every port ----------------------------------------------------


def auto_rule(reserved: frozenset[int] = frozenset()) -> Rule:
    return Rule(ResourceType.SERVICE, "web", 80, auto=True, reserved_ports=reserved)


def test_user_rules_have_no_refusal() -> None:
    assert refusal_for(Rule(ResourceType.SERVICE, "web", 80)) is None


def test_refusal_for_an_automatic_rule() -> None:
    refuse = refusal_for(auto_rule(frozenset({5432})))
    assert refuse is not None
    assert refuse(80) == "80 is below 1024, which kubetray never gives to an automatic forward"
    assert refuse(1023) is not None and refuse(1024) is None
    assert refuse(5432) == "5432 is named by one of your own rules"
    assert refuse(5433) is None


def test_an_automatic_rule_never_gets_a_privileged_port(closing: list[Bound]) -> None:
    # 80-90 are all refused whether or not this process could bind them (root, or macOS, can).
    bound = bind_listener("127.0.0.1", 80, refuse=refusal_for(auto_rule()))
    closing.append(bound)
    assert bound.port >= 1024 and bound.fell_back
    assert bound.reasons[:11] == tuple(
        f"{port} is below 1024, which kubetray never gives to an automatic forward" for port in range(80, 91))


def test_an_automatic_rule_skips_ports_the_user_names(closing: list[Bound]) -> None:
    base = free_block(3)
    bound = bind_listener("127.0.0.1", base, refuse=refusal_for(auto_rule(frozenset({base, base + 1}))))
    closing.append(bound)
    assert bound.port == base + 2
    assert bound.reasons == (f"{base} is named by one of your own rules", f"{base + 1} is named by one of your own rules")


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6")
def test_ipv6_loopback(closing: list[Bound]) -> None:
    try:
        bound = bind_listener("::1", None)
    except PortError:
        pytest.skip("::1 not configured here")
    closing.append(bound)
    assert bound.sock.family == socket.AF_INET6
    assert_listening(bound, "::1")
    same = bind_listener("[::1]", bound.port)
    closing.append(same)
    assert same.port != bound.port
    assert same.reasons == (f"{bound.port} is in use",)


def test_address_not_on_this_machine_raises() -> None:
    # 192.0.2.0/24 is TEST-NET-1: never assigned to a real interface.
    with pytest.raises(PortError, match=r"192\.0\.2\.1 is not an address of this machine"):
        bind_listener("192.0.2.1", 8080)


def test_hostname_is_rejected_clearly() -> None:
    with pytest.raises(PortError, match='"example.com" is not an IP address'):
        bind_listener("example.com", 8080)


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root may bind low ports"
)
def test_privileged_port_falls_back_when_not_root(closing: list[Bound]) -> None:
    probe = occupy(80)
    if probe is not None:  # ip_unprivileged_port_start lets us bind low ports here
        probe.close()
        pytest.skip("this system lets unprivileged users bind port 80")
    bound = bind_listener("127.0.0.1", 80)
    closing.append(bound)
    assert bound.reasons[0] in ("80 needs privileges", "80 is in use")
    assert bound.fell_back


def test_module_constants_match_skaffold() -> None:
    assert ports.FALLBACK_RANGE == range(4503, 4534)
    assert ports.BACKLOG == 128


def test_accepted_connections_get_tcp_nodelay_from_asyncio() -> None:
    """asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP; ours must say so."""
    import asyncio

    bound = bind_listener("127.0.0.1", None)

    async def main() -> int:
        accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            sock = writer.get_extra_info("socket")
            accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(handle, sock=bound.sock)
        _, writer = await asyncio.open_connection("127.0.0.1", bound.port)
        value = await asyncio.wait_for(accepted, 5)
        writer.close()
        server.close()
        return value

    assert asyncio.run(main()) != 0
