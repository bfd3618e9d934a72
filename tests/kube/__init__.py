"""Stand-ins for a Kubernetes cluster: the API server and the kubelet, over real TLS with
real tokens, for tests and load tests (there is no cluster on the test machines)."""

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
