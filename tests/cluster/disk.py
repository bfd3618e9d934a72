"""A real disk stall: a small ext4 image on a loop device, frozen with ``fsfreeze``.

Writes to a frozen filesystem block in the kernel (D state) until it is thawed,
which is what a WAL on a stalling disk looks like from inside the agent; no
signal or debug hook is involved. A frozen mount hangs every writer, even
``timeout`` and the test's own teardown, so ``loop_disk`` thaws in a finally
block, and ``cleanup_stale`` thaws and unmounts what a killed run left frozen.
Needs root (mount, fsfreeze).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

MOUNT_NAME = "shoal-stall-mnt-"  # every mount point this module makes: then the maker's pid


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=30)


class Disk:
    def __init__(self, mount: Path) -> None:
        self.mount = mount
        self.frozen = False

    def freeze(self) -> None:
        run("fsfreeze", "-f", str(self.mount))
        self.frozen = True

    def thaw(self) -> None:
        run("fsfreeze", "-u", str(self.mount), check=False)  # not frozen: an error, harmless
        self.frozen = False


def cleanup_stale() -> None:
    """Thaw and unmount our mount points whose maker is gone (a killed run's); a running
    harness's frozen disk is left alone."""
    for line in Path("/proc/mounts").read_text().splitlines():
        point = line.split(" ")[1]
        _, sep, pid = Path(point).name.partition(MOUNT_NAME)
        if sep and pid.isdigit() and not Path(f"/proc/{pid}").exists():
            run("fsfreeze", "-u", point, check=False)
            run("umount", "-l", point, check=False)


@contextlib.contextmanager
def loop_disk(folder: Path, size_mb: int = 64) -> Iterator[Disk]:
    """An ext4 filesystem of ``size_mb`` mounted in ``folder``; always thawed and unmounted on
    exit (``mount -o loop`` frees the loop device on unmount)."""
    cleanup_stale()
    image, mount = folder / "shoal-stall.img", folder / f"{MOUNT_NAME}{os.getpid()}"
    with open(image, "wb") as fh:
        fh.truncate(size_mb << 20)
    run("mkfs.ext4", "-q", "-F", str(image))
    mount.mkdir(parents=True, exist_ok=True)
    run("mount", "-o", "loop", str(image), str(mount))
    disk = Disk(mount)
    try:
        yield disk
    finally:
        disk.thaw()
        if run("umount", str(mount), check=False).returncode:
            run("umount", "-l", str(mount), check=False)
