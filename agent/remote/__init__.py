"""Remote write: queues that follow the WAL and send Remote-Write 1.0 or 2.0 to each endpoint.

Public surface: ``RemoteWrite`` (the Appendable the component wraps) and its
settings ``EndpointConfig``, ``QueueConfig``, ``WALOptions``.
"""

from agent.remote.config import EndpointConfig, MetadataConfig, QueueConfig, WALOptions
from agent.remote.write import RemoteWrite

__all__ = ["EndpointConfig", "MetadataConfig", "QueueConfig", "RemoteWrite", "WALOptions"]
