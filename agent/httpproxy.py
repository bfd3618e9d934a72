"""Which proxy, if any, a request to a URL goes through, with Prometheus' semantics.

Prometheus' ``ProxyConfig`` leans on Go: a bare ``proxy_url`` proxies every request
(``http.ProxyURL``), while ``no_proxy`` or ``proxy_from_environment`` hand the decision to
``golang.org/x/net/http/httpproxy``, which also never proxies ``localhost`` or a loopback
IP. aiohttp's own environment handling (``trust_env``) differs in those rules, so the
decision is made here, once per target URL, and aiohttp is told the answer per request.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from urllib.parse import urlsplit

from agent.httpconfig import ProxyConfig

_DEFAULT_PORTS = {"http": "80", "https": "443", "socks5": "1080", "socks5h": "1080"}


@dataclass(frozen=True, slots=True)
class _Domain:
    suffix: str  # always with a leading dot
    port: str
    match_host: bool  # "foo.com" also matches foo.com itself; ".foo.com" only subdomains


@dataclass(frozen=True, slots=True)
class _IP:
    net: ipaddress.IPv4Network | ipaddress.IPv6Network
    port: str


@dataclass(frozen=True, slots=True)
class NoProxy:
    """A parsed NO_PROXY list: IPs and CIDRs, domain names (and subdomains), ``*`` for all."""

    everything: bool
    ips: tuple[_IP, ...]
    domains: tuple[_Domain, ...]

    @classmethod
    def parse(cls, text: str) -> NoProxy:
        ips: list[_IP] = []
        domains: list[_Domain] = []
        for raw in text.split(","):
            p = raw.strip().lower()
            if not p:
                continue
            if p == "*":
                return cls(True, (), ())
            try:
                ips.append(_IP(ipaddress.ip_network(p, strict=False), ""))
                continue
            except ValueError:
                pass
            host, port = _split_host_port(p)
            if host is None:
                host, port = p, ""
            if not host:
                continue  # ":80": no host, ignored as Go ignores it
            try:
                ips.append(_IP(ipaddress.ip_network(host), port))
                continue
            except ValueError:
                pass
            if host.startswith("*."):
                host = host[1:]
            match_host = not host.startswith(".")
            domains.append(_Domain(host if not match_host else "." + host, port, match_host))
        return cls(False, tuple(ips), tuple(domains))

    def bypass(self, host: str, port: str) -> bool:
        """Whether a request to host:port goes direct."""
        if self.everything:
            return True
        host = host.lower()
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            ip = None
        if ip is not None:
            for m in self.ips:
                if ip in m.net and m.port in ("", port):
                    return True
        for d in self.domains:
            if host.endswith(d.suffix) or (d.match_host and host == d.suffix[1:]):
                if d.port in ("", port):
                    return True
        return False


def _split_host_port(text: str) -> tuple[str | None, str]:
    """Go's net.SplitHostPort, loosely: (host, port), or (None, "") when there is no port."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or not text[end + 1:].startswith(":"):
            return None, ""
        return text[1:end], text[end + 2:]
    if text.count(":") != 1:
        return None, ""
    host, port = text.split(":")
    return host, port


def _with_scheme(proxy: str) -> str:
    """httpproxy reads "proxy:3128" as http://proxy:3128."""
    return proxy if "://" in proxy else "http://" + proxy


def _env(*names: str) -> str:
    for n in names:
        v = os.environ.get(n)
        if v:
            return v
    return ""


def proxy_for(cfg: ProxyConfig, url: str) -> str | None:
    """The proxy URL for a request to ``url`` under ``cfg``, or None to go direct."""
    if cfg.proxy_from_environment:
        http, https = _env("HTTP_PROXY", "http_proxy"), _env("HTTPS_PROXY", "https_proxy")
        no_proxy = _env("NO_PROXY", "no_proxy")
    elif cfg.proxy_url:
        if not cfg.no_proxy:
            return cfg.proxy_url  # http.ProxyURL: every request, loopback included
        http = https = cfg.proxy_url
        no_proxy = cfg.no_proxy
    else:
        return None
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    proxy = https if scheme == "https" else http if scheme == "http" else ""
    if not proxy:
        return None
    host = (parts.hostname or "").lower()
    try:
        port = str(parts.port or _DEFAULT_PORTS.get(scheme, ""))
    except ValueError:
        return None
    if not host or host == "localhost":
        return None
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:
        pass
    if NoProxy.parse(no_proxy).bypass(host, port):
        return None
    return _with_scheme(proxy)
