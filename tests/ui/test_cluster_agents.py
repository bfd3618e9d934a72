"""The cluster page of a real three-agent cluster: three `shoal run` processes joined with
Alloy's flags, one of them opened in headless Chromium, every peer listed and the split of
targets shown; the why-not page of one agent names the peer that scrapes a target it left.

The remote-write endpoint points at a closed port: the page only needs the agents, and
nothing is asserted about delivery here (tests/cluster/test_agents.py does that).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import procs
from tests.cluster.test_agents import HOSTS, Agents, config, settled
from tests.targets import Target
from tests.ui.browser import search, shoot, text_appears


@pytest.fixture
def three(tmp_path: Path) -> Iterator[tuple[Agents, list[Target]]]:
    targets = [Target(f"page_metric{{i=\"{i}\"}} {i}\n").start() for i in range(6)]
    cfg = tmp_path / "shoal.alloy"
    cfg.write_text(config(targets, f"http://127.0.0.1:{procs.free_port()}"))
    agents = Agents(tmp_path, cfg)
    try:
        for i in range(len(HOSTS)):
            agents.start(i)
        yield agents, targets
    finally:
        agents.stop_all()
        for t in targets:
            t.stop()


def test_cluster_page_lists_the_three_agents_and_why_not_names_the_owner(three, browser, tmp_path):
    agents, targets = three
    names = {f"agent{i}" for i in range(len(HOSTS))}
    procs.eventually(lambda: settled(agents, names), timeout=30, interval=0.2)

    browser.get(agents.url(0) + "/clustering")
    text_appears(browser, "3 peers.")
    rows = browser.find_elements("css selector", "#data tbody tr")
    assert sorted(r.text.split()[0] for r in rows) == sorted(names)
    assert sum("yes" in r.text.split()[:5] for r in rows) == 1  # this agent, marked once
    shoot(browser, tmp_path, "clustering-three-agents")

    # A target agent0 left to a peer: the why-not page says which peer scrapes it.
    owned_here = agents.owned(0)
    elsewhere = next(t.address for t in targets if t.address not in owned_here)
    owner = next(f"agent{i}" for i in (1, 2) if elsewhere in agents.owned(i))
    browser.get(agents.url(0) + "/whynot")
    search(browser, elsewhere)
    text_appears(browser, f"owned by peer {owner}")
    shoot(browser, tmp_path, "whynot-owned-by-peer")
