"""prometheus-operator's monitors as scrape jobs: the translation (``monitors``) and the
running jobs kept in step with the cluster (``manager``). Imports nothing from the runtime."""

from agent.discovery.operator.manager import Manager, MonitorState
from agent.discovery.operator.monitors import Defaults, Job, Rejected, references, translate

__all__ = ["Defaults", "Job", "Manager", "MonitorState", "Rejected", "references", "translate"]
