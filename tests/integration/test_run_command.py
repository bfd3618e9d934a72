"""`shoal run` as a process: refusing bad configs before start, folders, the file watcher, signals."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

import httpx
import pytest

from tests import procs

pytestmark = pytest.mark.integration

SELF = """
prometheus.exporter.self "a" { }
discovery.relabel "r" {
  targets = prometheus.exporter.self.a.targets
  rule {
    target_label = "env"
    replacement  = "ENV"
  }
}
"""


def shoal(*args: str, cwd=None) -> subprocess.CompletedProcess:  # noqa: ANN001
    return subprocess.run(
        [sys.executable, "-m", "agent", *args], capture_output=True, text=True, timeout=60, cwd=cwd
    )


def relabel_output(agent_url: str) -> list:
    r = httpx.get(f"{agent_url}/api/v0/web/components/discovery.relabel.r", timeout=10)
    (out,) = [e for e in r.json()["exports"] if e["name"] == "output"]
    return [{kv["key"]: kv["value"]["value"] for kv in t["value"]} for t in out["value"]["value"]]


def test_config_errors_are_printed_with_positions_and_nothing_starts(tmp_path):
    cfg = tmp_path / "bad.alloy"
    cfg.write_text(
        'prometheus.scrape "s" {\n'
        "  targets    = []\n"
        "  forward_to = [prometheus.remote_write.missing.receiver]\n"
        '  scrape_interval = "15x"\n'
        "}\n"
        'prometheus.remote_write "w" {\n'
        "  endpoint {\n"
        '    url = "not a url"\n'
        "    colour = 1\n"
        "  }\n"
        "}\n"
        'prometheus.unknown "u" { }\n'
        'prometheus.remote_write "leak" {\n'
        "  endpoint {\n"
        '    url = "http://127.0.0.1:1/api/v1/write"\n'
        '    bearer_token = "s3cr3t-token" + 1\n'
        "  }\n"
        "}\n"
    )
    port = procs.free_port()
    res = shoal("run", f"--server.http.listen-addr=127.0.0.1:{port}", f"--storage.path={tmp_path}/data", str(cfg))
    assert res.returncode == 1
    err = res.stderr
    assert f"{cfg}:3:17: component 'prometheus.remote_write.missing' does not exist or is out of scope" in err
    assert f"{cfg}:4:21: " in err and "15x" in err
    assert f'{cfg}:9:5: unrecognized attribute name "colour"' in err
    assert f"{cfg}:12:1: unrecognized component name 'prometheus.unknown'" in err
    assert "Traceback" not in err
    # The source line is shown with its string literals masked: an inline secret stays out of logs.
    assert f"{cfg}:16:37: cannot add string and number" in err and 'bearer_token = "***" + 1' in err
    assert "s3cr3t" not in err
    assert not (tmp_path / "data").exists()
    # shoal validate reports the same problems.
    res = shoal("validate", str(cfg))
    assert res.returncode == 1 and f"{cfg}:12:1: unrecognized component name" in res.stderr

    res = shoal("run", str(tmp_path / "nope.alloy"))
    assert res.returncode == 1 and "no such file or folder" in res.stderr


def test_listen_address_in_use_is_a_clean_error(tmp_path):
    cfg = tmp_path / "c.alloy"
    cfg.write_text(SELF)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        res = shoal("run", f"--server.http.listen-addr=127.0.0.1:{port}", f"--storage.path={tmp_path}/d", str(cfg))
    assert res.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in res.stderr and "Traceback" not in res.stderr


def test_folder_config_file_watcher_and_sigint(tmp_path):
    folder = tmp_path / "conf"
    folder.mkdir()
    (folder / "a.alloy").write_text('prometheus.exporter.self "a" { }\nlogging {\n  format = "json"\n}\n')
    (folder / "b.alloy").write_text(SELF.replace('prometheus.exporter.self "a" { }', ""))
    (folder / "ignored.txt").write_text("this is not alloy")
    agent = procs.agent(tmp_path, folder, "--config.watch-interval=0.2", "--cluster.enabled=true")
    try:
        procs.wait_http(agent.url + "/-/ready", proc=agent.popen)
        assert relabel_output(agent.url)[0]["env"] == "ENV"
        # --cluster.enabled with no peers: a cluster of one, this agent a participant.
        peers = httpx.get(agent.url + "/api/v0/web/peers", timeout=5).json()
        assert [(p["isSelf"], p["state"], p["liveness"]) for p in peers] == [(True, "participant", "alive")]
        # Changing one file on disk is picked up without being asked.
        (folder / "b.alloy").write_text(SELF.replace('prometheus.exporter.self "a" { }', "").replace("ENV", "changed"))
        procs.eventually(lambda: relabel_output(agent.url)[0]["env"] == "changed", timeout=20)
        # A broken file on disk is refused; the running graph stays.
        (folder / "b.alloy").write_text("discovery.relabel \"r\" {\n  targets = 1\n}\n")
        procs.eventually(lambda: "failed to reload config" in agent.log_text(), timeout=20)
        assert relabel_output(agent.url)[0]["env"] == "changed"
        assert agent.stop(signal.SIGINT, timeout=10) == 0
        log = agent.log_text()
        assert '"msg": "config reloaded"' in log  # the logging block switched the format to JSON
        assert "cluster node started" in log and "clustering is not supported yet" not in log
    finally:
        agent.stop()


def test_the_local_example_config_is_valid():
    res = shoal("validate", str(procs.ROOT / "config" / "local.alloy"))
    assert (res.returncode, res.stderr) == (0, "")
