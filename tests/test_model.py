"""The pure helpers of model.py that say where a tunnel listens and whether it is a web page."""

from __future__ import annotations

import pytest

from trayapp.model import (
    AutoSource,
    Event,
    EventKind,
    ResourceType,
    Rule,
    is_http_port_name,
    is_loopback,
    listen_text,
    local_address,
    local_url,
    tunnel_url,
)


@pytest.mark.parametrize(("address", "loopback"), [
    ("127.0.0.1", True), ("localhost", True), ("LOCALHOST", True), ("127.0.0.2", True), ("::1", True),
    ("[::1]", True), ("0.0.0.0", False), ("::", False), ("[::]", False), ("192.168.1.5", False),
    ("fe80::1", False), ("example.com", False), ("", False),
])
def test_is_loopback(address: str, loopback: bool) -> None:
    assert is_loopback(address) is loopback


@pytest.mark.parametrize(("address", "text", "copied"), [
    ("127.0.0.1", "localhost:8080", "localhost:8080"),
    ("localhost", "localhost:8080", "localhost:8080"),
    ("::1", "[::1]:8080", "[::1]:8080"),
    ("[::1]", "[::1]:8080", "[::1]:8080"),
    ("127.0.0.2", "127.0.0.2:8080", "127.0.0.2:8080"),
    ("0.0.0.0", "0.0.0.0:8080, open to your network", "127.0.0.1:8080"),
    ("::", "[::]:8080, open to your network", "[::1]:8080"),
    ("192.168.1.5", "192.168.1.5:8080, open to your network", "192.168.1.5:8080"),
])
def test_where_a_listener_is_shown_and_how_it_is_reached(address: str, text: str, copied: str) -> None:
    assert listen_text(address, 8080) == text
    assert local_address(address, 8080) == copied


def test_urls_are_usable_from_this_machine() -> None:
    assert local_url(Rule(ResourceType.SERVICE, "web", 80, local_port=8080), 8080) == "http://localhost:8080/"
    # 0.0.0.0 takes IPv4 only: localhost could resolve to ::1 and be refused.
    assert local_url(Rule(ResourceType.SERVICE, "web", 80, address="0.0.0.0"), 8080) == "http://127.0.0.1:8080/"
    assert local_url(Rule(ResourceType.SERVICE, "web", 80, address="::1"), 8080) == "http://[::1]:8080/"


@pytest.mark.parametrize(("rule", "url"), [
    (Rule(ResourceType.SERVICE, "web", 80, local_port=8080), "http://localhost:8080/"),
    (Rule(ResourceType.SERVICE, "web", 8443), "https://localhost:8080/"),
    (Rule(ResourceType.SERVICE, "web", 9999, local_port=3000), "http://localhost:8080/"),  # fell back
    (Rule(ResourceType.SERVICE, "web", "http-web"), "http://localhost:8080/"),
    (Rule(ResourceType.SERVICE, "db", 5432, scheme="http", path="admin"), "http://localhost:8080/admin"),
    (Rule(ResourceType.SERVICE, "db", 5432), None),
    (Rule(ResourceType.STATEFULSET, "api", "grpc"), None),
    (Rule(ResourceType.POD, "debug", 5005), None),
])
def test_a_url_only_where_the_tunnel_is_a_web_page(rule: Rule, url: str | None) -> None:
    assert tunnel_url(rule, 8080) == url
    assert tunnel_url(rule, None) is None


@pytest.mark.parametrize(("name", "http"), [
    ("http", True), ("https", True), ("HTTP", True), ("http-metrics", True), ("web-https", True),
    ("h2c", True), ("httpx", False), ("grpc", False), ("web", False), ("postgres", False),
])
def test_http_port_names(name: str, http: bool) -> None:
    assert is_http_port_name(name) is http


def test_events_of_automatic_tunnels_say_so_in_json() -> None:
    event = Event(EventKind.FORWARDING, "Forwarding.", auto=True, source=AutoSource.DEBUG)
    assert (event.to_json()["auto"], event.to_json()["source"]) == (True, "debug")
    assert Event(EventKind.FORWARDING, "Forwarding.").to_json()["source"] is None


def test_sources_have_a_heading_and_a_reason() -> None:
    assert [source.heading for source in AutoSource] == [
        "Skaffold", "Skaffold debug", "kubetray.dev/forward annotation", "auto.selectors"]
    assert all(source.why and source.title() == source.value.title() for source in AutoSource)
