from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cluster.helpers import Nodes


@pytest.fixture
def nodes() -> Iterator[Nodes]:
    made = Nodes()
    yield made
    made.stop_all()
