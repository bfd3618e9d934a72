from __future__ import annotations

import pytest

from tests.ui.browser import chromium


@pytest.fixture(scope="session")
def browser():  # noqa: ANN201
    d = chromium()
    try:
        yield d
    finally:
        d.quit()
