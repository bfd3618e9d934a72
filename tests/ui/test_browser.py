"""The debug UI in headless Chromium against a running ``shoal run`` scraping real targets.

Selenium drives Debian's chromium through Debian's chromium-driver (no browser
download). The agent scrapes two real targets and one address nobody listens
on, behind a discovery.relabel that drops a pod by rule, and writes to a real
VictoriaMetrics; the UI is served under a path prefix, as behind a proxy.
Screenshots of each page land in ``<tmp>/screenshots`` (and in ``docs/ui/``
when ``SHOAL_UI_SCREENSHOTS=docs`` is set, which is how the docs' images are made).
"""

from __future__ import annotations

import os
import shutil

import httpx
import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from tests import procs
from tests.targets import Target
from tests.ui.browser import search, shoot, text_appears

PASSWORD = "PASS-s3cr3t-abc"
TOKEN = "TOKEN-s3cr3t-xyz"
PAYLOAD = "# TYPE requests_total counter\nrequests_total{code=\"200\"} 7\nup_since 3\n"
PREFIX = "/shoal"

pytestmark = pytest.mark.integration


def config(web: Target, api: Target, dead_port: int, vm_url: str) -> str:
    return f"""
discovery.relabel "pods" {{
  targets = [
    {{"__address__" = "{web.address}", "pod" = "web-1", "service" = "web"}},
    {{"__address__" = "{api.address}", "pod" = "api-1", "service" = "api"}},
    {{"__address__" = "127.0.0.1:{dead_port}", "pod" = "db-1", "service" = "db"}},
    {{"__address__" = "127.0.0.1:1", "pod" = "ghost-1", "service" = "ghost"}},
  ]
  rule {{
    source_labels = ["service"]
    target_label  = "app"
  }}
  rule {{
    source_labels = ["pod"]
    regex         = "ghost-.*"
    action        = "drop"
  }}
}}

prometheus.scrape "pods" {{
  targets         = discovery.relabel.pods.output
  forward_to      = [prometheus.relabel.metrics.receiver]
  scrape_interval = "1s"
  bearer_token    = "{TOKEN}"
}}

prometheus.relabel "metrics" {{
  forward_to = [prometheus.remote_write.vm.receiver]
  rule {{
    source_labels = ["__name__"]
    regex         = "up_since"
    action        = "drop"
  }}
}}

prometheus.remote_write "vm" {{
  endpoint {{
    url = "{vm_url}/api/v1/write"
    basic_auth {{
      username = "shoal"
      password = "{PASSWORD}"
    }}
  }}
}}
"""


@pytest.fixture(scope="module")
def agent(tmp_path_factory):  # noqa: ANN201
    tmp = tmp_path_factory.mktemp("ui")
    with Target(PAYLOAD) as web, Target(PAYLOAD) as api, procs.victoria_metrics(tmp / "vm") as vm:
        cfg = tmp / "main.alloy"
        cfg.write_text(config(web, api, procs.free_port(), vm.url))
        p = procs.agent(tmp, cfg, f"--server.http.ui-path-prefix={PREFIX}")
        try:
            procs.wait_http(p.url + "/-/ready", proc=p.popen)
            base = p.url + PREFIX
            procs.eventually(lambda: httpx.get(base + "/api/v0/web/targets?health=up").json()["matched"] == 2)
            yield base, web, tmp
        finally:
            p.stop()


def test_pages(agent, browser):
    base, web, tmp = agent
    d = browser

    d.get(base + "/")
    text_appears(d, "prometheus.scrape.pods")
    assert "healthy" in d.find_element(By.ID, "data").text
    shoot(d, tmp, "components")

    d.get(base + "/component/prometheus.scrape.pods")
    text_appears(d, "(secret)")
    shoot(d, tmp, "component")

    d.get(base + "/graph")
    WebDriverWait(d, 15).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#data svg rect"))
    assert len(d.find_elements(By.CSS_SELECTOR, "#data svg rect")) == 4
    shoot(d, tmp, "graph")

    d.get(base + "/targets")
    text_appears(d, "targets match")
    search(d, "pod=web-1")
    text_appears(d, "1 of 4 targets match")
    rows = d.find_elements(By.CSS_SELECTOR, "#data tbody tr")
    assert len(rows) == 1 and web.address in rows[0].text and "up" in rows[0].text
    search(d, "")
    text_appears(d, "4 of 4 targets match")
    assert "connection refused" in d.find_element(By.ID, "data").text.lower()
    shoot(d, tmp, "targets")

    # Paging with the keyboard: Enter on Next, and focus stays on Next for the next press.
    d.get(base + "/targets?limit=1")
    text_appears(d, "4 of 4 targets match")
    d.find_element(By.XPATH, "//button[text()='Next']").send_keys(Keys.ENTER)
    pager = WebDriverWait(d, 15, ignored_exceptions=(StaleElementReferenceException,))
    pager.until(lambda d: "2–2" in d.find_element(By.CSS_SELECTOR, ".pager").text)
    assert d.switch_to.active_element.text == "Next"
    d.switch_to.active_element.send_keys(Keys.ENTER)
    pager.until(lambda d: "3–3" in d.find_element(By.CSS_SELECTOR, ".pager").text)

    d.get(base + "/whynot")
    search(d, "ghost-1")
    text_appears(d, "dropped by rule 2 (drop) of discovery.relabel.pods")
    shoot(d, tmp, "whynot")
    search(d, "db-1")
    text_appears(d, "failing with error")

    d.get(base + "/clustering")
    text_appears(d, "Clustering disabled")
    shoot(d, tmp, "clustering")

    d.get(base + "/remote-write")
    text_appears(d, "prometheus.remote_write.vm")
    shoot(d, tmp, "remote-write")

    d.get(base + "/targets?q=pod=web-1")
    text_appears(d, "1 of 4 targets match")
    d.find_element(By.LINK_TEXT, "live samples").click()  # from a target to what it produced
    text_appears(d, 'requests_total{app="web"')
    assert d.find_element(By.ID, "q").get_attribute("value") == web.address
    text_appears(d, "after prometheus.relabel.metrics → prometheus.remote_write.vm")
    rows = {r.text.split()[0]: r.text for r in d.find_elements(By.CSS_SELECTOR, "#data tbody tr")}
    assert rows["up_since{app=\"web\","].endswith("dropped")  # metric relabeling dropped it
    assert "dropped" not in rows["requests_total{app=\"web\","]
    assert "up_since" in d.find_element(By.ID, "data").text
    shoot(d, tmp, "live")

    d.get(base + "/playground")
    d.find_element(By.ID, "q").send_keys('{__address__="10.0.0.7:9100", pod="ghost-7", service="cache"}')
    d.find_element(By.CSS_SELECTOR, "form button").click()
    text_appears(d, "Result: dropped.")
    text = d.find_element(By.ID, "data").text
    assert 'app="cache"' in text and "rule 1" in text and "rule 2" in text
    shoot(d, tmp, "playground")

    d.set_window_size(420, 900)  # a narrow window still shows the data
    d.get(base + "/targets")
    text_appears(d, "targets match")
    shoot(d, tmp, "targets-narrow")


NGINX = """\
{user}worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  server {{
    listen 127.0.0.1:{port};
    location {prefix}/ {{ proxy_pass http://{upstream}; }}
    location / {{ return 404; }}
  }}
}}
"""


def test_pages_through_a_reverse_proxy(agent, browser, tmp_path):
    """nginx serves the agent under the prefix and nothing else: every request the pages make must carry it."""
    base, web, _ = agent
    port = procs.free_port()
    # As root, nginx would run its worker as "nobody", which cannot read the pytest tmp dir.
    user = "user root;\n" if os.geteuid() == 0 else ""
    upstream = base.removeprefix("http://").removesuffix(PREFIX)
    (tmp_path / "nginx.conf").write_text(NGINX.format(user=user, tmp=tmp_path, port=port, prefix=PREFIX,
                                                      upstream=upstream))
    nginx = procs.spawn([shutil.which("nginx") or "/usr/sbin/nginx", "-c", str(tmp_path / "nginx.conf"),
                         "-p", str(tmp_path), "-g", "daemon off;"], tmp_path, "nginx")
    try:
        proxied = f"http://127.0.0.1:{port}{PREFIX}"
        procs.wait_http(proxied + "/api/v0/web/components", proc=nginx.popen)
        browser.get(proxied + "/targets")
        search(browser, "pod=web-1")
        text_appears(browser, "1 of 4 targets match")
        browser.find_element(By.LINK_TEXT, "Graph").click()
        WebDriverWait(browser, 15).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#data svg rect"))
        browser.find_element(By.CSS_SELECTOR, "#data svg a").click()  # a box links to its component
        text_appears(browser, "Arguments")
        assert browser.current_url.startswith(proxied + "/component/")
    finally:
        nginx.stop()


def test_no_secret_in_any_page_or_answer(agent):
    base, web, _ = agent
    paths = ["/", "/graph", "/targets", "/whynot", "/clustering", "/remote-write", "/live", "/playground",
             "/component/prometheus.scrape.pods", "/component/prometheus.remote_write.vm",
             "/component/discovery.relabel.pods", "/api/v0/web/components",
             "/api/v0/web/components/prometheus.scrape.pods", "/api/v0/web/components/prometheus.remote_write.vm",
             "/api/v0/web/components/discovery.relabel.pods", "/api/v0/web/targets", "/api/v0/web/whynot?q=web",
             "/api/v0/web/remote_write", "/api/v0/web/graph.svg", "/api/v0/web/relabel",
             f"/api/v0/web/live?component=prometheus.scrape.pods&instance={web.address}"]
    for path in paths:
        r = httpx.get(base + path)
        assert r.status_code == 200, path
        assert PASSWORD not in r.text and TOKEN not in r.text, path
    r = httpx.get(base.removesuffix(PREFIX) + "/metrics")
    assert PASSWORD not in r.text and TOKEN not in r.text


def test_a_refused_configuration_shows_on_every_page(agent, browser):
    base, _, tmp = agent
    root = base.removesuffix(PREFIX)
    cfg = tmp / "main.alloy"
    good = cfg.read_text()
    cfg.write_text(good + '\ndiscovery.relabel "broken" {\n  targets = 1\n}\n')
    try:
        assert httpx.post(root + "/-/reload", timeout=30).status_code == 400
        for path in ("/targets", "/remote-write"):
            browser.get(base + path)
            WebDriverWait(browser, 15).until(lambda d: d.find_element(By.ID, "config-banner").is_displayed())
            assert "main.alloy:" in browser.find_element(By.ID, "config-banner").text
        shoot(browser, tmp, "config-refused")
    finally:
        cfg.write_text(good)
        assert httpx.post(root + "/-/reload", timeout=30).status_code == 200
    browser.get(base + "/targets")
    text_appears(browser, "targets match")
    assert not browser.find_element(By.ID, "config-banner").is_displayed()
