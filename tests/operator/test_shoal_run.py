"""`shoal run` as a process with prometheus.operator.servicemonitors: monitor states, targets
and health reach the HTTP API and /metrics, and the Secret's token reaches neither them nor
the log while it authenticates every scrape."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.kube import RBAC_MANIFEST, APIServer
from tests.operator.harness import TOKEN, secret
from tests.operator.target import TokenTarget
from tests.operator.test_runtime import app, service_monitor
from tests.procs import agent, eventually, wait_http

pytestmark = pytest.mark.integration
SECRET = "run-s3cret-value"


def test_shoal_run_scrapes_monitors_and_keeps_secrets(tmp_path: Path) -> None:
    with APIServer(tmp_path / "api", rbac_files=[RBAC_MANIFEST]) as api, \
            TokenTarget("127.0.0.11", token=SECRET) as t:
        api.add_token(TOKEN, "shoal/shoal")
        for o in app("api", "127.0.0.11", t.port, {"app": "api"}):
            api.apply(o)
        api.apply(secret("api-token", {"token": SECRET}))
        api.apply(service_monitor("api", {"app": "api"},
                                  bearerTokenSecret={"name": "api-token", "key": "token"}))
        api.apply(service_monitor("broken", {"app": "api"},
                                  bearerTokenSecret={"name": "api-token", "key": "missing"}))
        cfg = tmp_path / "op.alloy"
        cfg.write_text(f'''
prometheus.operator.servicemonitors "all" {{
  forward_to = []
  client {{
    api_server   = "{api.url}"
    bearer_token = "{TOKEN}"
    tls_config {{
      ca_file = "{api.certs.ca}"
    }}
  }}
}}
''')
        p = agent(tmp_path, cfg)
        try:
            wait_http(p.url + "/-/ready", proc=p.popen)
            url = p.url + "/api/v0/web/components/prometheus.operator.servicemonitors.all"

            def monitors() -> dict[str, Any] | None:
                info = httpx.get(url).json()
                text = str(info)
                ok = "'up'" in text and "missing" in text
                return info if ok else None

            info = eventually(monitors, timeout=20)
            assert info["health"]["state"] == "unhealthy"
            assert 'default/broken: Secret default/api-token has no key "missing"' in info["health"]["message"]
            assert f"Bearer {SECRET}" in t.seen
            metrics = httpx.get(p.url + "/metrics").text
            assert 'shoal_operator_monitors{component_id="prometheus.operator.servicemonitors.all",kind="ServiceMonitor",state="accepted"} 1.0' in metrics
            for shown in (httpx.get(url).text, httpx.get(p.url + "/api/v0/web/components").text, metrics):
                assert SECRET not in shown
        finally:
            assert p.stop() == 0, p.log_text()[-3000:]
            assert SECRET not in p.log_text()
