"""Writing files so that an interrupted run never leaves a half-written file behind, each recorded in its
manifest (pipeline.manifests) when the writer names its producer; and one line for an error of the file system.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline import manifests


@contextmanager
def atomic_path(
    path: Path, producer: str | None = None, settings_digest: str | None = None, target: Path | None = None
) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    producer   the command that remakes the file (e.g. "make train MODEL=autoint"): the file is recorded in its
               manifest, with `settings_digest` and `target` (the file Make rebuilds it through, if another one),
               before the rename, so that a loader or make notices if it is damaged later. Without a producer an
               old manifest is removed first: the new file is unrecorded, not damaged.
    An error of the file system that names no file or only the temporary one (a full disk during a write) is
    raised again naming `path`; the temporary file is removed whatever happens.
    """
    path = Path(path)
    # The suffix is kept because some writers (Keras, matplotlib) choose the format from it.
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        if producer is None:
            manifests.forget(path)
        else:
            manifests.write(path, producer, settings_digest, target, source=tmp)
        os.replace(tmp, path)
    except OSError as error:
        named = error.filename is not None and not os.path.basename(str(error.filename)).startswith(".tmp-")
        if error.errno not in manifests.FILE_SYSTEM_ERRNOS or named:
            raise
        raise OSError(error.errno, os.strerror(error.errno), str(path)) from error
    finally:
        with contextlib.suppress(OSError):  # best effort: the error that brought us here says more
            tmp.unlink(missing_ok=True)


def write_json(path: Path, data, **manifest) -> None:
    """`data` as JSON; `manifest` (producer, settings_digest, target) as atomic_path takes it."""
    with atomic_path(path, **manifest) as tmp:
        tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_parquet(path: Path, frame, **manifest) -> None:
    with atomic_path(path, **manifest) as tmp:
        frame.to_parquet(tmp, index=False)


def write_text(path: Path, text: str, **manifest) -> None:
    with atomic_path(path, **manifest) as tmp:
        tmp.write_text(text, encoding="utf-8")


# What the user can do about an error of the file system, by errno (manifests.FILE_SYSTEM_ERRNOS).
OS_ERROR_ADVICE = {
    errno.ENOSPC: "free some space, or point ML_PIPELINE_ROOT at a larger disk, and run it again",
    errno.EDQUOT: "the disk quota is used up; free some space and run it again",
    errno.EFBIG: "the file is larger than this process may write (ulimit -f)",
    errno.EACCES: "this user may not write or read there; check the folder's owner and permissions",
    errno.EPERM: "this user may not write or read there; check the folder's owner and permissions",
    errno.EROFS: "the file system is read-only; point ML_PIPELINE_ROOT at a writable folder",
    errno.EIO: "the disk reported an input/output error",
}


def describe_os_error(error: OSError) -> str:
    """One line: the path, what the file system said, and what to do about it."""
    where = f"{manifests.shown(error.filename)}: " if isinstance(error.filename, str) else ""
    said = os.strerror(error.errno) if error.errno else str(error)
    advice = OS_ERROR_ADVICE.get(error.errno)
    return f"{where}{said}" + (f" ({advice})" if advice else "")


def record_timing(folder: Path, stage: str, seconds: float) -> None:
    """Keep a stage's wall time in folder/timings/<stage>.json, for the report's timing table."""
    slug = re.sub(r"[^a-z0-9]+", "-", stage.lower()).strip("-")
    write_json(
        Path(folder) / "timings" / f"{slug}.json",
        {"stage": stage, "seconds": round(seconds, 1), "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())},
    )
