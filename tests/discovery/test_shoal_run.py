"""`shoal run` as a process with discovery.kubernetes: the informers are a service of the
process, and the component's exports and metrics reach the HTTP API."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import yaml

from tests.discovery.fixtures import OBJECTS
from tests.kube import RBAC_MANIFEST, APIServer
from tests.procs import agent, eventually, wait_http

pytestmark = pytest.mark.integration
TOKEN = "run-token"


def test_shoal_run_discovers_pods(tmp_path: Path) -> None:
    with APIServer(tmp_path / "api", objects=yaml.safe_load(OBJECTS.read_text()),
                   rbac_files=[RBAC_MANIFEST]) as api:
        api.add_token(TOKEN, "shoal/shoal")
        (tmp_path / "token").write_text(TOKEN)
        cfg = tmp_path / "k.alloy"
        cfg.write_text(f'''
discovery.kubernetes "pods" {{
  role              = "pod"
  api_server        = "{api.url}"
  bearer_token_file = "{tmp_path / 'token'}"
  tls_config {{
    ca_file = "{api.certs.ca}"
  }}
  namespaces {{
    names = ["shop"]
  }}
  selectors {{
    role  = "pod"
    label = "app.kubernetes.io/name=checkout"
  }}
}}
''')
        p = agent(tmp_path, cfg)
        try:
            wait_http(p.url + "/-/ready", proc=p.popen)

            def exported() -> list[dict] | None:
                info = httpx.get(p.url + "/api/v0/web/components/discovery.kubernetes.pods").json()
                value = next(e["value"] for e in info["exports"] if e["name"] == "targets")
                # Alloy's JSON: an array of objects of {key, value: {type, value}}.
                targets = [{kv["key"]: kv["value"]["value"] for kv in t["value"]} for t in value["value"]]
                ok = info["health"]["state"] == "healthy" and targets
                return targets if ok else None

            targets = eventually(exported, timeout=20)
            # Two checkout pods in shop: 5 + 2 targets; nothing from other namespaces.
            assert len(targets) == 7
            assert {t["__meta_kubernetes_namespace"] for t in targets} == {"shop"}
            metrics = httpx.get(p.url + "/metrics").text
            assert 'prometheus_sd_kubernetes_events_total{component_id="discovery.kubernetes.pods",event="add",role="pod"} 2.0' in metrics
            # One list with the namespace and selector the arguments asked for.
            lists = [r for r in api.requests(verb="list", resource="pods")]
            assert lists and all(r.path == "/api/v1/namespaces/shop/pods" for r in lists)
            assert all(r.query.get("labelSelector") == "app.kubernetes.io/name=checkout" for r in lists)
        finally:
            assert p.stop() == 0, p.log_text()[-3000:]
