"""Monitors' oauth2 and keepDroppedTargets end to end: a ServiceMonitor whose clientId and
clientSecret live in a Secret gets tokens from a real token endpoint and scrapes a real
target that accepts only the newest token; a rotated clientSecret is used without a
reload and never shows; keepDroppedTargets bounds the dropped targets in the debug info."""

from __future__ import annotations

import json
from pathlib import Path

from agent.server.debug import targets_page, why_not
from tests.authproxy import Idp, Proxy, Target, serve
from tests.components.helpers import metrics_text, run
from tests.discovery.test_informer import until
from tests.kube import APIServer
from tests.operator.harness import component, config, first_health, running, scraped, secret
from tests.operator.target import TokenTarget
from tests.operator.test_runtime import app, service_monitor


def test_oauth2_from_a_secret_and_a_rotated_client_secret(tmp_path: Path, api: APIServer) -> None:
    async def go() -> None:
        idp = Idp("shop client", "s3cret-one")
        target = Target(idp=idp)
        async with serve(idp.app()) as idp_port, serve(target.app(), "127.0.0.13") as port:
            for o in app("shop", "127.0.0.13", port, {"app": "shop"}):
                api.apply(o)
            api.apply(secret("oauth", {"id": "shop client", "secret": "s3cret-one"}))
            api.apply(service_monitor("shop", {"app": "shop"}, oauth2={
                "clientId": {"secret": {"name": "oauth", "key": "id"}},
                "clientSecret": {"name": "oauth", "key": "secret"},
                "tokenUrl": f"http://127.0.0.1:{idp_port}/token", "scopes": ["metrics"]}))
            async with running(tmp_path, config(api, "ServiceMonitor")) as c:
                comp = component(c, "ServiceMonitor")

                await until(lambda: first_health(comp) == "up")
                assert idp.issued == ["tok-1"] and idp.forms[0]["scope"] == "metrics"
                assert "Bearer tok-1" in target.seen
                # Rotate: the token endpoint now wants the new secret, the Secret follows.
                idp.secret = "s3cret-two"
                api.apply(secret("oauth", {"id": "shop client", "secret": "s3cret-two"}))
                await until(lambda: idp.issued[-1:] == ["tok-2"] and target.seen[-1] == "Bearer tok-2")
                await until(lambda: first_health(comp) == "up")
                shown = json.dumps(comp.debug_info()) + str(comp.current_health()) + metrics_text(c)
                assert "s3cret" not in shown and "tok-" not in shown

    with api:
        run(go())


def test_keep_dropped_targets_bounds_the_debug_info(tmp_path: Path, api: APIServer) -> None:
    with api, TokenTarget("127.0.0.14") as t:
        for name in ("a", "b", "c"):
            for o in app(name, "127.0.0.14", t.port, {"app": name}):
                api.apply(o)
        kept = service_monitor("kept", {"app": "a"})
        kept["spec"]["keepDroppedTargets"] = 1
        api.apply(kept)
        api.apply(service_monitor("all", {"app": "a"}))

        async def go() -> None:
            async with running(tmp_path, config(api, "ServiceMonitor")) as c:
                comp = component(c, "ServiceMonitor")

                def monitors() -> dict[str, dict]:
                    return {m["name"]: m for m in (comp.debug_info() or {"monitors": []})["monitors"]}

                await until(lambda: len(scraped(c, "ServiceMonitor")) == 2
                            and all(scraped(c, "ServiceMonitor").values())
                            and all(m["targets_dropped_count"] == 2 for m in monitors().values()))
                got = monitors()
                assert len(got["kept"]["targets_dropped"]) == 1
                assert len(got["all"]["targets_dropped"]) == 2
                dropped = {d["labels"]["__meta_kubernetes_service_name"] for d in got["all"]["targets_dropped"]}
                assert dropped == {"b", "c"}
                # The Targets page and "why not scraped" show a monitor's targets beside a
                # prometheus.scrape's, each row naming its monitor.
                def rows_now() -> list[dict]:
                    return [r for r in targets_page(c)["data"] if "monitor" in r]

                await until(lambda: all(r["health"] != "unknown" for r in rows_now()))
                rows = rows_now()
                assert {r["component_id"] for r in rows} == {"prometheus.operator.servicemonitors.m"}
                by = sorted((r["monitor"], r["health"]) for r in rows)
                assert by == [("default/all", "dropped"), ("default/all", "dropped"), ("default/all", "up"),
                              ("default/kept", "dropped"), ("default/kept", "up")]
                assert all(r["url"] == f"http://127.0.0.14:{t.port}/metrics" for r in rows if r["health"] == "up")
                answer = why_not(c, "__meta_kubernetes_service_name=c")
                # "all" keeps both dropped targets, "kept" one of them: c is in one or both.
                assert answer["matched"] in (1, 2)
                assert all(a["verdict"].startswith("dropped by prometheus.operator.servicemonitors.m: ")
                           for a in answer["answers"])

        run(go())


def test_proxy_url_and_no_proxy_of_monitors_through_a_real_proxy(tmp_path: Path, api: APIServer) -> None:
    """proxyUrl alone sends even a loopback target's scrapes through the proxy (Go's
    http.ProxyURL); with noProxy, Go's httpproxy rules decide, and loopback goes direct."""
    async def go() -> None:
        target = Target()
        async with Proxy() as proxy, serve(target.app(), "127.0.0.15") as port:
            for name in ("via", "direct"):
                for o in app(name, "127.0.0.15", port, {"app": name}):
                    api.apply(o)
            api.apply(service_monitor("via", {"app": "via"}, proxyUrl=proxy.url))
            api.apply(service_monitor("direct", {"app": "direct"}, proxyUrl=proxy.url,
                                      noProxy="example.com", params={"m": ["direct"]}))
            async with running(tmp_path, config(api, "ServiceMonitor")) as c:
                comp = component(c, "ServiceMonitor")

                def healths() -> dict[str, str]:
                    m = comp.manager
                    return {r.job.name: t.health for _, r in (m.runners() if m else [])
                            for t in r.pool.targets()}

                await until(lambda: healths() == {"serviceMonitor/default/via/0": "up",
                                                  "serviceMonitor/default/direct/0": "up"})
                n = len(target.seen)
                await until(lambda: len(target.seen) >= n + 4)
                # Each target has its own connection, so a proxied "direct" job would show
                # its own URL (with ?m=direct) here: only the "via" job's did.
                assert {s[:2] for s in proxy.seen} == {("GET", f"http://127.0.0.15:{port}/metrics")}

    with api:
        run(go())
