from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# ../shared next to a checkout; a worktree one level deeper (/work/wt/<name>) finds it further up.
SHARED = next(
    (p / "shared" for p in ROOT.parents if (p / "shared" / "conformance").is_dir()),
    ROOT.parent / "shared",
)
CONFORMANCE = SHARED / "conformance"
sys.path.insert(0, str(ROOT))
