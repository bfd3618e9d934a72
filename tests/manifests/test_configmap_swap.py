"""A ConfigMap edit reaches a running agent the way the kubelet delivers it.

The kubelet mounts a ConfigMap as a folder whose visible files are symlinks
through ``..data`` to a hidden timestamped folder, and an edit writes a new
timestamped folder and renames a fresh ``..data`` symlink over the old one. The
agent polls the folder, so these tests build that exact layout with real
symlinks and swap it with an atomic rename, as the kubelet's AtomicWriter does.
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import httpx
import pytest

from tests import procs
from tests.integration.test_run_command import SELF as CONFIG
from tests.integration.test_run_command import relabel_output

pytestmark = pytest.mark.integration


class ConfigMapVolume:
    """A folder laid out as the kubelet lays out a mounted ConfigMap."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.generation = 0
        root.mkdir()

    def write(self, files: dict[str, str]) -> None:
        """Publish a new version of every file at once, as one ConfigMap update."""
        self.generation += 1
        stamp = f"..2026_12_06_22_00_{self.generation:02d}.{os.getpid()}"
        (self.root / stamp).mkdir()
        for name, text in files.items():
            (self.root / stamp / name).write_text(text)
        tmp = self.root / "..data_tmp"
        tmp.symlink_to(stamp)
        old = (self.root / "..data").readlink() if (self.root / "..data").is_symlink() else None
        os.replace(tmp, self.root / "..data")
        for name in files:
            link = self.root / name
            if not link.is_symlink():
                link.symlink_to(Path("..data") / name)
        for link in self.root.iterdir():
            if link.is_symlink() and not link.name.startswith("..") and link.name not in files:
                link.unlink()
        if old is not None:
            shutil.rmtree(self.root / old)


def relabel_env(agent_url: str) -> str:
    (target,) = relabel_output(agent_url)
    return target["env"]


def test_a_configmap_swap_is_applied_and_a_broken_one_refused(tmp_path):
    volume = ConfigMapVolume(tmp_path / "conf")
    volume.write({"main.alloy": CONFIG})
    agent = procs.agent(tmp_path, volume.root, "--config.watch-interval=0.2")
    try:
        procs.wait_http(agent.url + "/-/ready", proc=agent.popen)
        assert relabel_env(agent.url) == "ENV"

        # An edit that splits the config in two files and changes a value.
        volume.write(
            {
                "main.alloy": CONFIG.replace('"ENV"', '"swapped"').split("discovery")[0],
                "relabel.alloy": "discovery"
                + CONFIG.replace('"ENV"', '"swapped"').split("discovery")[1],
            }
        )
        procs.eventually(lambda: relabel_env(agent.url) == "swapped", timeout=20)
        ready = httpx.get(agent.url + "/-/ready", timeout=10)
        assert (ready.status_code, ready.text) == (200, "Alloy is ready.\n")

        # A broken edit: the agent keeps running the last good graph and says so.
        volume.write({"main.alloy": 'discovery.relabel "r" {\n  targets = 1\n}\n'})
        procs.eventually(lambda: "failed to reload config" in agent.log_text(), timeout=20)
        assert relabel_env(agent.url) == "swapped"
        ready = httpx.get(agent.url + "/-/ready", timeout=10)
        assert ready.status_code == 200
        assert "last good configuration" in ready.text
        assert "main.alloy:2:" in ready.text
        metrics = httpx.get(agent.url + "/metrics", timeout=10).text
        assert "alloy_config_last_load_successful 0.0" in metrics
        # Every UI page shows this status above its data.
        status = httpx.get(agent.url + "/api/v0/web/status", timeout=10).json()
        assert status["ready"] and "main.alloy:2:" in status["configError"]

        # Fixing it clears the message.
        volume.write({"main.alloy": CONFIG.replace('"ENV"', '"fixed"')})
        procs.eventually(lambda: relabel_env(agent.url) == "fixed", timeout=20)
        ready = httpx.get(agent.url + "/-/ready", timeout=10)
        assert (ready.status_code, ready.text) == (200, "Alloy is ready.\n")
        assert httpx.get(agent.url + "/api/v0/web/status", timeout=10).json()["configError"] == ""
        assert agent.stop(signal.SIGTERM, timeout=10) == 0
    finally:
        agent.stop()
