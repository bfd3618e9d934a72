"""Stand-ins for a Kubernetes cluster: the API server and the kubelet, over real TLS with
real tokens, for tests and load tests (there is no cluster on the test machines)."""

from tests.kube.apiserver import RBAC_MANIFEST, APIServer
from tests.kube.certs import CertFiles, make_certs

__all__ = ["APIServer", "CertFiles", "RBAC_MANIFEST", "make_certs"]
