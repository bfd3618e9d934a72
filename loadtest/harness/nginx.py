"""nginx as the benchmark's targets and as its remote-write sink.

nginx is used because it costs almost nothing per request on the other core:
the figures then measure the agent, not the load generator. Two separate
instances keep their request counters apart: the targets' stub_status gives the
number of scrapes actually served (an agent-independent count of what was
scraped), and the sink answers 204 to every write without parsing it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx

from .proc import Proc, spawn
from .targets import PayloadSet

TARGET_NET = "127.1"  # targets live on 127.1.A.B: loopback, clear of 127.0.0.1


def target_addresses(count: int) -> list[str]:
    """``count`` distinct loopback addresses, 250 per /24 (127.1.0.1, 127.1.0.2, ...)."""
    if count > 250 * 256:
        raise ValueError(f"at most {250 * 256} targets, asked for {count}")
    return [f"{TARGET_NET}.{i // 250}.{i % 250 + 1}" for i in range(count)]


def variant_regex(interval_s: float) -> str:
    """The regex picking the variant digit out of nginx's ``$msec`` (``1700000123.456``).

    Scrapes of one target come exactly one interval apart, so the digit must
    move once per interval: the tens digit of the seconds for intervals of 10 s
    and more, the units digit below (every scrape then sees other values).
    """
    if interval_s >= 10:
        return r"~(?<d>\d)\d\.\d+$"
    return r"~(?<d>\d)\.\d+$"


_COMMON = """\
{user}worker_processes 1;
worker_rlimit_nofile 65536;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 32768; multi_accept on; }}
http {{
  access_log off;
  server_tokens off;
  client_body_temp_path {prefix}/client_body;
  proxy_temp_path {prefix}/proxy;
  fastcgi_temp_path {prefix}/fastcgi;
  uwsgi_temp_path {prefix}/uwsgi;
  scgi_temp_path {prefix}/scgi;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  types {{}}
"""


def _common(prefix: Path) -> str:
    # Started as root, nginx would drop its worker to "nobody", which cannot
    # read payloads under a private temporary folder; the worker stays root
    # (it only ever listens on loopback and serves files the harness wrote).
    user = "user root;\n" if os.geteuid() == 0 else ""
    return _COMMON.format(prefix=prefix, user=user)


def targets_conf(
    prefix: Path,
    payloads: PayloadSet,
    addresses: list[str],
    port: int,
    interval_s: float,
    status_port: int,
) -> str:
    """Config for one nginx serving ``/metrics`` on every address in ``addresses``."""
    listens = "\n".join(f"    listen {a}:{port};" for a in addresses)
    families = "\n".join(f"    {a} {i % payloads.families};" for i, a in enumerate(addresses))
    return (
        _common(prefix)
        + f"""\
  default_type "text/plain; version=0.0.4; charset=utf-8";
  sendfile on;
  tcp_nopush on;
  etag off;
  if_modified_since off;
  map $msec $variant {{
    "{variant_regex(interval_s)}" $d;
  }}
  map $server_addr $family {{
    default 0;
{families}
  }}
  server {{
{listens}
    root {payloads.root};
    gzip_static on;
    location = /metrics {{ try_files /f$family/v$variant.prom =404; }}
    location / {{ return 404; }}
  }}
  server {{
    listen 127.0.0.1:{status_port};
    location = /status {{ stub_status; }}
  }}
}}
"""
    )


def sink_conf(prefix: Path, port: int) -> str:
    """Config for an nginx that accepts any remote-write POST and answers 204."""
    return (
        _common(prefix)
        + f"""\
  default_type text/plain;
  server {{
    listen 127.0.0.1:{port};
    client_max_body_size 0;
    location = /api/v1/write {{ return 204; }}
    location = /status {{ stub_status; }}
    location / {{ return 404; }}
  }}
}}
"""
    )


def nginx_binary() -> str:
    path = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if path is None:
        raise RuntimeError(
            "nginx is not installed: apt-get install -y nginx-light (loadtest/run does this)"
        )
    return path


def check(conf: Path) -> None:
    """``nginx -t`` on a written config; raises with nginx's own message."""
    out = subprocess.run(
        [nginx_binary(), "-t", "-q", "-c", str(conf), "-p", str(conf.parent)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if out.returncode != 0:
        raise RuntimeError(f"nginx rejected {conf}: {out.stderr.strip()}")


def start(prefix: Path, text: str, name: str, cpu: int | None) -> Proc:
    """Write ``text`` to ``prefix/nginx.conf`` and start nginx in the foreground."""
    prefix.mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(text)
    check(conf)
    args = [nginx_binary(), "-c", str(conf), "-p", str(prefix), "-g", "daemon off;"]
    return spawn(args, prefix, name, cpu=cpu)


@dataclass
class StubStatus:
    accepts: int
    requests: int


_STATUS = re.compile(r"\s(\d+)\s+(\d+)\s+(\d+)\s")


def stub_status(url: str) -> StubStatus:
    """nginx's running totals; ``requests`` counts every request ever served."""
    text = httpx.get(url, timeout=5).text
    m = _STATUS.search(text)
    if m is None:
        raise RuntimeError(f"unexpected stub_status from {url}: {text!r}")
    return StubStatus(accepts=int(m.group(1)), requests=int(m.group(3)))
