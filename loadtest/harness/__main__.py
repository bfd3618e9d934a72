"""``python -m loadtest.harness``: what loadtest/run calls."""

import sys

from .run import main

sys.exit(main())
