"""The API server stand-in the run-time tests of tests/operator share: one empty
"default" namespace, the ClusterRole of manifests/ enforced, the agent's token known."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.kube import RBAC_MANIFEST, APIServer
from tests.operator.harness import TOKEN


@pytest.fixture
def api(tmp_path: Path) -> APIServer:
    server = APIServer(tmp_path / "api", objects=[
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}}],
        rbac_files=[RBAC_MANIFEST])
    server.add_token(TOKEN, "shoal/shoal")
    return server
