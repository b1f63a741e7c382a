"""Directories sandbox makes at first use (audit log, state, caches), with modes that do not depend on the umask.

A fresh machine has none of /var/log/sandbox, /run/sandbox or /var/cache/sandbox; sandbox creates
them when it first needs them, as Docker and containerd create theirs.  `os.makedirs(mode=...)`
is not enough: the umask applies to the leaf, and missing parents get 0777 minus the umask, so
under root's common `umask 027` /var/cache/sandbox would be 0750 and a user-namespaced
container's root could not reach the demo rootfs below it.  On the hot path: os only.
"""

from __future__ import annotations

import os


def ensure_dir(path: str, mode: int, parents_mode: int = 0o755) -> bool:
    """Make `path` a directory: missing parents get `parents_mode`, `path` itself `mode`, whatever the umask.

    An existing directory is left exactly as it is (an operator may have chosen other modes; `sandbox
    doctor` reports them).  Returns True if `path` was created here.  Raises OSError (for example
    ENOTDIR when a file is in the way, EROFS).
    """
    if os.path.isdir(path):
        return False
    parent = os.path.dirname(path.rstrip("/"))
    if parent and parent != path and not os.path.lexists(parent):  # something else in the way: mkdir says what
        ensure_dir(parent, parents_mode, parents_mode)
    try:
        os.mkdir(path, mode & 0o700)  # never wider than the owner's until the chmod below
    except FileExistsError:
        if os.path.isdir(path):
            return False  # made meanwhile by a concurrent first use: theirs stands
        raise
    os.chmod(path, mode)
    return True
