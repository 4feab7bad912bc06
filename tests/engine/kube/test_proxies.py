"""Proxy choice as kubectl makes it (Go's httpproxy rules), and proxy URLs shown without passwords."""

from __future__ import annotations

import pytest

from trayapp.engine.kube.proxies import NoProxy, ProxyUrlError, parse_proxy, proxy_for, redact

# One NO_PROXY with every kind of entry: a domain with and without a leading dot, a wildcard
# domain, IPs with and without a port, IPv4 and IPv6 CIDRs.
NO_PROXY = ("corp.example, .lab.example, *.wild.example, 10.1.1.1, 10.1.1.2:81, 10.1.1.3:80, "
            "172.16.0.0/30, 2001:db8::1, [2001:db8::2]:443, [2001:db8::3]:80, 2002:db8:a::45/64, "
            "kube.example:6443")


@pytest.mark.parametrize(("host", "port", "proxied"), [
    # never proxied, whatever NO_PROXY says: localhost and loopback addresses
    ("localhost", 80, False), ("127.0.0.1", 80, False), ("127.9.9.9", 80, False), ("::1", 80, False),
    ("::2", 80, True),
    # IPs, with and without a port in the entry
    ("10.1.1.1", 80, False), ("10.1.1.2", 80, True), ("10.1.1.2", 81, False), ("10.1.1.3", 80, False),
    ("10.1.1.4", 80, True),
    ("172.16.0.2", 80, False), ("172.16.0.5", 80, True),
    ("2001:db8::1", 80, False), ("2001:db8::2", 80, True), ("2001:db8::2", 443, False),
    ("2001:db8::3", 80, False), ("2002:db8:a::123", 80, False), ("fe80::1", 80, True),
    ("::ffff:10.1.1.1", 80, False),  # the same address written as IPv4-mapped IPv6
    # domains: "corp.example" matches itself and below; ".lab.example" only below
    ("corp.example", 443, False), ("api.corp.example", 443, False), ("notcorp.example", 443, True),
    ("lab.example", 443, True), ("k8s.lab.example", 443, False),
    ("wild.example", 443, True), ("a.wild.example", 443, False), ("awild.example", 443, True),
    ("CORP.EXAMPLE", 443, False),
    # a domain with a port matches that port only
    ("kube.example", 6443, False), ("kube.example", 443, True),
    ("localhost.example", 443, True), ("local.localhost", 443, True),
])
def test_no_proxy_matches_as_go_httpproxy(host: str, port: int, proxied: bool) -> None:
    assert NoProxy.parse(NO_PROXY).use_proxy(host, port) is proxied


def test_star_bypasses_everything_and_junk_is_ignored() -> None:
    assert not NoProxy.parse("*").use_proxy("anything.example", 443)
    assert NoProxy.parse(":1, , [::, x:http").use_proxy("example.com", 80)


def test_internationalised_names_match_their_ascii_form() -> None:
    assert not NoProxy.parse(".示例.com").use_proxy("www.xn--fsq092h.com", 443)
    assert not NoProxy.parse("xn--fsq092h.com").use_proxy("www.示例.com", 443)


def test_https_servers_use_https_proxy_and_http_servers_http_proxy() -> None:
    env = {"HTTPS_PROXY": "https-proxy.example:3128", "HTTP_PROXY": "http://plain-proxy.example:8080"}
    secure = proxy_for("https://kube.example:6443", None, env)
    plain = proxy_for("http://kube.example:8080", None, env)
    assert secure is not None and (secure.scheme, secure.host, secure.port) == ("http", "https-proxy.example", 3128)
    assert secure.source == "HTTPS_PROXY"
    assert plain is not None and plain.host == "plain-proxy.example" and plain.source == "HTTP_PROXY"
    assert proxy_for("https://kube.example", None, {"HTTP_PROXY": "p:1"}) is None  # no cross-over


def test_upper_case_wins_and_lower_case_works_alone() -> None:
    both = proxy_for("https://kube.example", None, {"HTTPS_PROXY": "upper:1", "https_proxy": "lower:2"})
    assert both is not None and both.host == "upper"
    lower = proxy_for("https://kube.example", None, {"https_proxy": "lower:2", "no_proxy": "other.example"})
    assert lower is not None and (lower.host, lower.source) == ("lower", "https_proxy")
    assert proxy_for("https://kube.example", None, {"https_proxy": "lower:2", "no_proxy": "kube.example"}) is None


def test_no_proxy_and_loopback_bypass_only_the_environment() -> None:
    env = {"HTTPS_PROXY": "http://proxy.example:3128", "NO_PROXY": "kube.example"}
    assert proxy_for("https://kube.example:6443", None, env) is None
    assert proxy_for("https://127.0.0.1:6443", None, env) is None
    assert proxy_for("https://localhost:6443", None, env) is None
    # client-go applies a kubeconfig proxy-url to everything, loopback and NO_PROXY included
    configured = proxy_for("https://127.0.0.1:6443", "socks5://gw.example", env)
    assert configured is not None and (configured.scheme, configured.port) == ("socks5", 1080)
    assert configured.source == "the kubeconfig's proxy-url"


def test_default_ports_and_schemes() -> None:
    assert parse_proxy("http://p", "x").port == 80
    assert parse_proxy("https://p", "x").port == 443
    assert parse_proxy("socks5h://p", "x").port == 1080
    assert parse_proxy("p.example:3128", "x").scheme == "http"  # Go reads a bare host:port as http://
    assert parse_proxy("[2001:db8::9]:3128", "x").host == "2001:db8::9"


def test_a_proxy_kubetray_cannot_use_is_a_sentence_without_the_password() -> None:
    with pytest.raises(ProxyUrlError) as caught:
        parse_proxy("ftp://alice:hunter2@p.example:21", "HTTPS_PROXY")
    assert "hunter2" not in str(caught.value)
    assert "ftp://" in str(caught.value) and "HTTPS_PROXY" in str(caught.value)
    with pytest.raises(ProxyUrlError) as caught:
        parse_proxy("http://alice:hunter2@p.example:notaport", "HTTPS_PROXY")
    assert "hunter2" not in str(caught.value)


def test_the_password_never_shows() -> None:
    proxy = parse_proxy("http://alice:s%3Acret@proxy.example:3128", "HTTPS_PROXY")
    assert (proxy.username, proxy.password) == ("alice", "s:cret")  # percent-decoded for the wire
    for text in (proxy.shown, proxy.described, repr(proxy), str(proxy)):
        assert "s:cret" not in text and "s%3Acret" not in text
    assert proxy.shown == "http://alice:xxxxx@proxy.example:3128"
    assert parse_proxy("socks5://bob@[2001:db8::9]", "x").shown == "socks5://bob@[2001:db8::9]:1080"
    assert redact("https://alice:hunter2@api.example:6443/p") == "https://alice:xxxxx@api.example:6443/p"
    assert redact("https://api.example:6443") == "https://api.example:6443"
