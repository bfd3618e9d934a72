"""``shoal run`` without --cluster.enabled never imports the cluster engine, nor modules it never uses.

The engine brings cryptography (the gossip keyring) and protobuf (its messages), ~8 MiB
resident in a process whose fixed cost is ~70 MiB; most agents do not cluster. A real
``shoal run`` in a subprocess scrapes itself, writes to a remote that refuses, answers
the cluster's own routes (peers, push-pull) and stops on SIGTERM; then it lists what
it imported. With clustering on, the same probe sees the engine: the check can fail.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT
from tests.procs import free_port

CONFIG = """
prometheus.exporter.self "agent" { }

prometheus.scrape "agent" {
  targets         = prometheus.exporter.self.agent.targets
  forward_to      = [prometheus.remote_write.local.receiver]
  scrape_interval = "1s"
  clustering { enabled = true }
}

prometheus.remote_write "local" {
  endpoint { url = "http://127.0.0.1:{dead}/api/v1/write" }
}
"""

# Runs the agent in the main thread; a thread waits for a scrape, calls the cluster's
# routes and sends SIGTERM. Prints, last, what was asked and what the process imported.
PROBE = """
import json, os, signal, sys, threading, time, urllib.error, urllib.request
from agent.cli import main

base = "http://127.0.0.1:{port}"
seen = {{}}

def get(path, data=None):
    try:
        with urllib.request.urlopen(urllib.request.Request(base + path, data=data), timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""

def drive():
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status, body = get("/metrics")
        if status == 200 and 'prometheus_remote_storage_samples_retried_total{{' in body:
            break
        time.sleep(0.2)
    seen["peers"] = json.loads(get("/api/v0/web/peers")[1])
    seen["push_pull"] = get("/api/v0/cluster/push-pull", data=b"x")[0]
    os.kill(os.getpid(), signal.SIGTERM)

threading.Thread(target=drive, daemon=True).start()
seen["rc"] = main({argv!r})
prefixes = ("agent.cluster", "cryptography", "google.protobuf")
seen["modules"] = sorted({{m.split(".")[0] if not m.startswith("agent") else "agent.cluster"
                          for m in sys.modules if m.startswith(prefixes)}})
seen["unused"] = sorted({{m.split(".")[0] for m in sys.modules if m.split(".")[0] in ("yaml", "rich", "pygments")}})
seen["rich_installed"] = __import__("importlib.util").util.find_spec("rich") is not None
print(json.dumps(seen))
"""


def probe(tmp_path: Path, *flags: str) -> dict:
    port, dead = free_port(), free_port()
    cfg = tmp_path / "agent.alloy"
    cfg.write_text(CONFIG.replace("{dead}", str(dead)))
    argv = ["run", str(cfg), f"--server.http.listen-addr=127.0.0.1:{port}",
            f"--storage.path={tmp_path / 'data'}", "--config.watch-interval=0", *flags]
    p = subprocess.run([sys.executable, "-c", PROBE.format(port=port, argv=argv)],
                       capture_output=True, cwd=ROOT, timeout=120, text=True)
    assert p.stdout.strip(), p.stderr[-2000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_run_without_clustering_does_not_import_the_cluster_engine(tmp_path: Path) -> None:
    seen = probe(tmp_path)
    assert seen["rc"] == 0
    assert seen["modules"] == []
    assert [m["isSelf"] for m in seen["peers"]] == [True]  # a cluster of one, as Alloy says
    assert seen["push_pull"] == 404
    # PyYAML only for encoding.from_yaml and YAML target files; structlog's console renderer's
    # rich and pygments never, even where they are installed (~4.5 MB together).
    assert seen["unused"] == []
    assert seen["rich_installed"]  # import-linter (a test tool) brings it: the check above can fail


def test_run_with_clustering_imports_it(tmp_path: Path) -> None:
    seen = probe(tmp_path, "--cluster.enabled", "--cluster.node-name=solo")
    assert seen["rc"] == 0
    assert seen["modules"] == ["agent.cluster", "cryptography", "google"]
    assert [(m["name"], m["role"]) for m in seen["peers"]] == [("solo", "participant")]
    assert seen["push_pull"] == 400  # a frame the engine refuses, answered by the engine
