"""The converter and file discovery stay engines: importing them loads no runtime."""

from __future__ import annotations

import subprocess
import sys


def test_engines_import_no_runtime() -> None:
    code = (
        "import sys, agent.convert.prometheus, agent.discovery.file\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('agent.runtime', 'agent.components',"
        " 'agent.server', 'agent.commands')))\n"
        "print(','.join(bad))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ""
