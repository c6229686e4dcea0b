"""What a background job of ``tongjie serve`` needs to know about its parent."""

from __future__ import annotations

import ctypes
import os
import signal
import sys

#: Set by ``serve`` for its background jobs: the pid they must not outlive.
PARENT_VARIABLE = "TONGJIE_SERVE_PID"
PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """Have the kernel send SIGTERM when ``parent`` dies, however it dies: a ``serve``
    stopped with SIGKILL (or by the OOM killer) must not leave its jobs running. Linux only;
    elsewhere the jobs stop when ``serve`` stops them."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before the request took effect
        raise SystemExit(f"tongjie serve (pid {parent}) is gone; not starting")
