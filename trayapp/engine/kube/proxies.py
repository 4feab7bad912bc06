"""Which proxy, if any, carries a connection to an API server: kubectl's rules, sans I/O.

client-go uses the kubeconfig's `proxy-url` for every request of that cluster when it is set.
Without one it asks Go's `http.ProxyFromEnvironment` (golang.org/x/net/http/httpproxy):
HTTPS_PROXY for https servers, HTTP_PROXY for http ones (upper case first, then lower case),
NO_PROXY listing hosts, domains, IPs and CIDRs that go direct, and `localhost` and loopback
addresses never proxied. This module mirrors those rules so kubetray goes where kubectl goes.

It is also the one place that turns a proxy URL into text for people: without its password.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import SplitResult, unquote, urlsplit

# The schemes client-go accepts in a proxy-url, plus socks5h (curl's name for SOCKS with the
# proxy resolving names, which is what Go's socks5 does anyway).
SCHEMES = ("http", "https", "socks5", "socks5h")
_DEFAULT_PORTS = {"http": 80, "https": 443, "socks5": 1080, "socks5h": 1080}

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class ProxyUrlError(ValueError):
    """A proxy URL kubetray cannot use. The message is a sentence and holds no password."""


@dataclass(frozen=True)
class ProxyUrl:
    """A proxy to connect through. The password is left out of repr() and of `shown`."""

    scheme: str  # one of SCHEMES
    host: str
    port: int
    source: str  # where it came from, for messages: "the kubeconfig's proxy-url", "HTTPS_PROXY"
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def shown(self) -> str:
        """The URL as kubetray writes it in messages and logs: a password is never in it."""
        user = f"{self.username}:xxxxx@" if self.password else f"{self.username}@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{user}{host}:{self.port}"

    @property
    def described(self) -> str:
        """For the middle of a sentence: the proxy http://proxy:3128 (from HTTPS_PROXY)."""
        return f"the proxy {self.shown} (from {self.source})"

    @property
    def socks(self) -> bool:
        return self.scheme.startswith("socks")


def redact(url: str) -> str:
    """Any URL with the password of its user:password@ part replaced, for messages and logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(a URL kubetray could not read)"
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{parts.username}:xxxxx@{host}").geturl()


def parse_proxy(raw: str, source: str) -> ProxyUrl:
    """A proxy URL as Go reads one: a bare `host:port` means http://. Raises ProxyUrlError."""
    text = raw.strip()
    parts = _split(text)
    if parts is None or parts.scheme not in SCHEMES:
        # Go retries a value it cannot use as http://VALUE, which makes "proxy:3128" work; a
        # value with another scheme (ftp://...) stays unusable, as it does for Go.
        retry = _split("http://" + text) if "://" not in text else None
        if retry is None or not retry.hostname:
            scheme = parts.scheme if parts is not None and parts.scheme else "?"
            raise ProxyUrlError(
                f"The proxy {redact(text)} (from {source}) uses {scheme}://, which kubetray cannot use; "
                "kubetray speaks http://, https://, socks5:// and socks5h:// proxies."
            )
        parts = retry
    if not parts.hostname:
        raise ProxyUrlError(f"The proxy {redact(text)} (from {source}) names no host.")
    try:
        port = parts.port or _DEFAULT_PORTS[parts.scheme]
    except ValueError:
        raise ProxyUrlError(f"The proxy {redact(text)} (from {source}) has a port that is not a number.") from None
    return ProxyUrl(
        scheme=parts.scheme,
        host=parts.hostname,
        port=port,
        source=source,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


def _split(text: str) -> SplitResult | None:
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - urlsplit defers the port check; a bad one must fail here
    except ValueError:
        return None
    return parts


def proxy_for(server: str, configured: str | None, environ: Mapping[str, str]) -> ProxyUrl | None:
    """The proxy for connections to `server` (scheme://host[:port]), as client-go picks it.

    Raises ProxyUrlError for a proxy URL that cannot be used.
    """
    if configured:
        # client-go applies a kubeconfig proxy-url to every request of the cluster: no NO_PROXY.
        return parse_proxy(configured, "the kubeconfig's proxy-url")
    parts = urlsplit(server)
    names = ("HTTPS_PROXY", "https_proxy") if parts.scheme == "https" else ("HTTP_PROXY", "http_proxy")
    found = next(((name, environ[name]) for name in names if environ.get(name)), None)
    if found is None:
        return None
    host = (parts.hostname or "").lower()
    port = parts.port or (443 if parts.scheme == "https" else 80)
    no_proxy = next((environ[name] for name in ("NO_PROXY", "no_proxy") if environ.get(name)), "")
    if not NoProxy.parse(no_proxy).use_proxy(host, port):
        return None
    return parse_proxy(found[1], found[0])


@dataclass(frozen=True)
class _Domain:
    suffix: str  # always with a leading dot
    port: int | None
    whole: bool  # the entry had no leading dot, so the name itself matches too

    def matches(self, host: str, port: int) -> bool:
        if host.endswith(self.suffix) or (self.whole and host == self.suffix[1:]):
            return self.port is None or self.port == port
        return False


@dataclass(frozen=True)
class _Ip:
    address: IpAddress
    port: int | None

    def matches(self, ip: IpAddress, port: int) -> bool:
        return self.address == ip and (self.port is None or self.port == port)


@dataclass(frozen=True)
class NoProxy:
    """A parsed NO_PROXY value, matched the way Go's httpproxy matches it."""

    everything: bool = False
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    ips: tuple[_Ip, ...] = ()
    domains: tuple[_Domain, ...] = ()

    @classmethod
    def parse(cls, value: str) -> NoProxy:
        networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        ips: list[_Ip] = []
        domains: list[_Domain] = []
        for entry in value.split(","):
            entry = entry.strip().lower()
            if not entry:
                continue
            if entry == "*":
                return cls(everything=True)
            if "/" in entry:
                try:
                    networks.append(ipaddress.ip_network(entry, strict=False))
                    continue
                except ValueError:
                    pass
            host, port_text = _split_host_port(entry)
            port = int(port_text) if port_text and port_text.isdigit() else None
            if port_text and port is None:
                continue  # "host:http": Go would never match a port like that
            if not host:
                continue
            ip = _ip(host)
            if ip is not None:
                ips.append(_Ip(ip, port))
                continue
            if host.startswith("*."):
                host = host[1:]
            host = _ascii(host)
            whole = not host.startswith(".")
            domains.append(_Domain(host if not whole else "." + host, port, whole))
        return cls(False, tuple(networks), tuple(ips), tuple(domains))

    def use_proxy(self, host: str, port: int) -> bool:
        """False when a connection to host:port goes direct."""
        host = _ascii(host.strip().lower())
        if host == "localhost":
            return False
        ip = _ip(host)
        if ip is not None and ip.is_loopback:
            return False
        if self.everything:
            return False
        if ip is not None:
            if any(ip in network for network in self.networks if network.version == ip.version):
                return False
            if any(entry.matches(ip, port) for entry in self.ips):
                return False
        return not any(entry.matches(host, port) for entry in self.domains)


def _split_host_port(entry: str) -> tuple[str, str | None]:
    """Go's net.SplitHostPort, or the whole entry as the host when it has no usable port."""
    if entry.startswith("["):
        end = entry.find("]")
        if end != -1 and entry[end + 1:end + 2] == ":":
            return entry[1:end], entry[end + 2:]
        return entry, None
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        return host, port
    return entry, None


def _ascii(name: str) -> str:
    """An internationalised name in its xn-- form, as Go compares them."""
    if name.isascii():
        return name
    try:
        return ".".join(label if label.isascii() else label.encode("idna").decode("ascii")
                        for label in name.split("."))
    except UnicodeError:
        return name


def _ip(text: str) -> IpAddress | None:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # Go compares ::ffff:1.2.3.4 and 1.2.3.4 as one address
    return ip
