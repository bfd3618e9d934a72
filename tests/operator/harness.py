"""The operator components under a controller against the API server stand-in: objects,
monitors, a running configuration, and what each component's pools scrape."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import yaml

from agent.components.prometheus_operator import _Operator
from agent.discovery.informers import Informers
from agent.runtime.controller import Controller
from agent.runtime.services import CLUSTER, HTTP, KUBERNETES_INFORMERS, Services
from agent.server.http import HTTPInfo
from tests.components.helpers import files, make_registry
from tests.conftest import CONFORMANCE
from tests.kube import APIServer

TOKEN = "operator-token"
OBJECTS = Path(__file__).with_name("objects.yaml")
GOLDEN = CONFORMANCE / "operator-golden"
COMPONENTS = {"ServiceMonitor": "servicemonitors", "PodMonitor": "podmonitors", "Probe": "probes"}


def objects() -> list[dict[str, Any]]:
    return yaml.safe_load(OBJECTS.read_text())


def secret(name: str, data: dict[str, str], namespace: str = "default") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


def config(api: APIServer, kind: str, extra: str = "", label: str = "m", token: str = TOKEN) -> str:
    return f'''
test.sink "s" {{ }}

prometheus.operator.{COMPONENTS[kind]} "{label}" {{
  forward_to = [test.sink.s.receiver]
  client {{
    api_server   = "{api.url}"
    bearer_token = "{token}"
    tls_config {{
      ca_file = "{api.certs.ca}"
    }}
  }}
  {extra}
}}
'''


@contextlib.asynccontextmanager
async def running(tmp_path: Path, src: str, cluster: Any = None) -> AsyncIterator[Controller]:
    informers = Informers(min_backoff=0.05, max_backoff=0.2)
    extra = {CLUSTER: cluster} if cluster is not None else {}
    services = Services(**{HTTP: HTTPInfo("127.0.0.1:12345"), KUBERNETES_INFORMERS: informers}, **extra)
    c = Controller(storage_path=tmp_path / "data", registry=make_registry(), services=services)
    await c.load(files(src))
    try:
        yield c
    finally:
        await c.stop()
        await informers.stop()


def component(c: Controller, kind: str, label: str = "m") -> _Operator:
    comp = c.node(f"prometheus.operator.{COMPONENTS[kind]}.{label}").component
    assert isinstance(comp, _Operator)
    return comp


def scraped(c: Controller, kind: str, label: str = "m") -> dict[str, list[dict[str, str]]]:
    """Each job's targets, as the labels their series get (sorted)."""
    m = component(c, kind, label).manager
    out: dict[str, list[dict[str, str]]] = {}
    if m is None:
        return out
    for _, r in m.runners():
        ts = [{k: v for k, v in t.labels if not k.startswith("__")} for t in r.pool.targets()]
        out[r.job.name] = sorted(ts, key=lambda d: sorted(d.items()))
    return out


def first_health(comp: _Operator) -> str:
    """The health of the first target of any job ("" before there is one)."""
    m = comp.manager
    ts = [t for _, r in (m.runners() if m else []) for t in r.pool.targets()]
    return ts[0].health if ts else ""
