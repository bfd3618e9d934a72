"""Stand-ins for a Kubernetes cluster: the API server and the kubelet, over real TLS with
real tokens, for tests and load tests (there is no cluster on the test machines).

    api = APIServer(tmp_path, rbac_files=[RBAC_MANIFEST])   # authorizes as the DaemonSet's role
    api.add_token("t", "shoal/shoal")                      # the shoal service account
    api.load(tmp_path / "objects.yaml")                    # or api.apply({...}) any time
    with api, Kubelet.for_apiserver(tmp_path, api, "node-1") as kubelet:
        ...  # api.url, api.certs.ca, kubelet.port; api.delete / compact / cut_watches /
             # stop / start; api.requests(verb="watch"); api.auth.unused_grants("shoal")
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["APIServer", "CertFiles", "Kubelet", "RBAC_MANIFEST", "make_certs"]

_WHERE = {"APIServer": "apiserver", "RBAC_MANIFEST": "apiserver", "CertFiles": "certs",
          "make_certs": "certs", "Kubelet": "kubelet"}


def __getattr__(name: str) -> Any:
    # Imported on first use rather than at the top: `python -m tests.kube.apiserver` runs
    # that module as __main__, and importing it here first would load it twice.
    if name not in _WHERE:
        raise AttributeError(name)
    return getattr(importlib.import_module(f"tests.kube.{_WHERE[name]}"), name)
