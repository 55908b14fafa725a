"""Files written so that a failure never leaves a broken one: a temporary file in the same folder,
renamed over the target only once it is complete (readers see the old file or the new one, never a part)."""

from __future__ import annotations

import os
import tempfile


def write_text_atomic(path, text: str, what: str) -> str:
    """Write ``text`` (UTF-8) to ``path`` atomically; ``ValueError`` naming the path when it cannot be written.

    An existing file keeps its permissions; a new one gets 0o644.
    """
    p = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(p))
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(p)}.", suffix=".tmp", dir=folder)
    except OSError as e:
        raise ValueError(f"{what}: cannot write in {folder!r} ({e.strerror or e})") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        try:
            mode = os.stat(p).st_mode & 0o777  # keep an existing file's permissions
        except OSError:
            mode = 0o644
        os.chmod(tmp, mode)
        os.replace(tmp, p)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise ValueError(f"{what}: cannot write {p!r} ({e.strerror or e})") from None
        raise
    return p
