"""Manifests: what an artifact was when it was written, so that a damaged file is noticed before it is used.

Beside every file a stage writes with a producer (pipeline.files.atomic_path(path, producer=...)) lies
<name>.manifest.json: its size, mtime and sha256, the producer (the command that remakes it, e.g.
"make train MODEL=autoint"), the digest of the settings it was made with, and, for a file that Make knows only
through another one (a training log through its model), that target. The manifest is written before the file is
renamed into place, so a file and its manifest agree unless something changed the file afterwards.

check(path, rebuild)    a missing or damaged file raises ArtifactError, one line naming the file, what is wrong and
                        the command that rebuilds it. Cheap: size and mtime against the manifest, sha256 only when
                        those differ, and a file state once verified is not looked at again in this process (a
                        service checks at load, not per request). A file without a manifest (written before
                        manifests, or by a writer that records none) is trusted as before.
checked(path, rebuild)  check, then the `with` block reads the file; a read error becomes ArtifactError too.
sweep(roots)            what make runs at its start: each damaged file (and the target it is made with) is moved
                        aside to .damaged-<name>, so that make rebuilds it and, through timestamps, what depends
                        on it, and nothing else.

Standard library only: the Makefile runs this with the system's Python before .venv exists.
    python3 -m pipeline.manifests sweep data artifacts       one line per damaged file moved aside, or nothing
    python3 -m pipeline.manifests check [--deep] FILE ...     one line per unusable file (exit 2), or nothing
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import hashlib
import json
import os
import stat
import sys
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SUFFIX = ".manifest.json"
ASIDE = ".damaged-"
# What reading a damaged file raises: h5py's OSError, pyarrow's ArrowInvalid and json's JSONDecodeError (both
# ValueErrors), numpy's BadZipFile and EOFError, a KeyError for a field the file lacks.
READ_ERRORS = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile)
# Errors of the file system that the user fixes (space, permissions, a read-only mount), not damage of a file:
# they pass through `checked` and end as one line from the command line (pipeline.cli).
FILE_SYSTEM_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES, errno.EPERM, errno.EROFS, errno.EIO}
)

# File states (size, mtime, inode) this process has verified against their manifests, by absolute path.
_verified: dict[str, tuple[int, int, int]] = {}


class ArtifactError(Exception):
    """A missing, damaged or unreadable artifact; str() is the one line shown to the user."""

    def __init__(self, path: Path, problem: str, rebuild: str | None, missing: bool = False):
        super().__init__(path, problem, rebuild)
        self.path, self.problem, self.rebuild, self.missing = Path(path), problem, rebuild, missing

    def __str__(self) -> str:
        advice = f"; {'make' if self.missing else 'rebuild'} it with `{self.rebuild}`" if self.rebuild else ""
        return f"{shown(self.path)} {self.problem}{advice}"


def shown(path: Path) -> str:
    """`path` relative to the working folder when it lies under it (as make and the docs name files)."""
    absolute = os.path.abspath(path)
    here = os.getcwd()
    return os.path.relpath(absolute, here) if absolute.startswith(here + os.sep) else str(path)


def manifest_path(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + SUFFIX)


def sha256_of(path: Path) -> str:
    with open(path, "rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def digest(settings) -> str:
    """The sha256 of a stage's settings (any JSON value), independent of key order."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _write_json(path: Path, content: dict) -> None:
    # Not pipeline.files.write_json, which sits above this module (it records manifests through it).
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        tmp.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):  # best effort: the error that brought us here says more
            tmp.unlink(missing_ok=True)


def write(
    path: Path,
    producer: str,
    settings_digest: str | None = None,
    target: Path | None = None,
    source: Path | None = None,
) -> None:
    """Record `path` in its manifest: `source`'s bytes when given (the temporary file about to be renamed onto
    `path`; a rename keeps size and mtime), else path's own. `target` is the file Make rebuilds `path` through,
    when that is another one."""
    path = Path(path)
    source = Path(source or path)
    state = source.stat()
    manifest = {
        "file": path.name,
        "size": state.st_size,
        "mtime_ns": state.st_mtime_ns,
        "sha256": sha256_of(source),
        "producer": producer,
        "settings_digest": settings_digest,
        "target": None if target is None or Path(target) == path else os.path.relpath(target, path.parent),
        "written": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }
    _write_json(manifest_path(path), manifest)


def forget(path: Path) -> None:
    """Remove path's manifest, if any: the file is about to be replaced by one that is not recorded."""
    manifest_path(path).unlink(missing_ok=True)


def read_manifest(path: Path, rebuild: str | None = None) -> dict | None:
    """path's manifest, None when it has none; ArtifactError when the manifest itself is damaged."""
    try:
        manifest = json.loads(manifest_path(path).read_text(encoding="utf-8"))
        int(manifest["size"]), int(manifest["mtime_ns"]), str(manifest["sha256"])
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        raise ArtifactError(path, f"has a damaged manifest ({manifest_path(path).name})", rebuild) from None
    return manifest


def problem_of(path: Path, manifest: dict, state: os.stat_result, deep: bool = False) -> str | None:
    """What is wrong with `path` against `manifest`, None if nothing: size and mtime first, the sha256 only
    when the mtime differs (or `deep`)."""
    if state.st_size != manifest["size"]:
        return f"is damaged: {state.st_size:,} bytes where its manifest says {manifest['size']:,}"
    if (deep or state.st_mtime_ns != manifest["mtime_ns"]) and sha256_of(path) != manifest["sha256"]:
        return "is damaged: its sha256 is not the one its manifest recorded"
    return None


def check(path: Path, rebuild: str | None = None, deep: bool = False) -> None:
    """Raise ArtifactError if `path` is missing or does not match its manifest (`rebuild`, else the manifest's
    producer, is the command the message names). A file without a manifest passes."""
    path = Path(path)
    try:
        state = path.stat()
    except FileNotFoundError:
        raise ArtifactError(path, "is missing", rebuild, missing=True) from None
    if not stat.S_ISREG(state.st_mode):
        raise ArtifactError(path, "is not a file", rebuild)
    key, seen = os.path.abspath(path), (state.st_size, state.st_mtime_ns, state.st_ino)
    if not deep and _verified.get(key) == seen:
        return
    manifest = read_manifest(path, rebuild)
    if manifest is not None:
        problem = problem_of(path, manifest, state, deep)
        if problem:
            raise ArtifactError(path, problem, rebuild or manifest.get("producer"))
    _verified[key] = seen


@contextmanager
def checked(path: Path, rebuild: str | None = None) -> Iterator[Path]:
    """check(path), then the block reads it: a read error (a file that was damaged before it had a manifest, or
    in a way the manifest cannot see) becomes ArtifactError; errors of the file system pass through."""
    check(path, rebuild)
    try:
        yield Path(path)
    except READ_ERRORS as error:
        if isinstance(error, OSError) and error.errno in FILE_SYSTEM_ERRNOS:
            raise
        what = " ".join(str(error).split())[:200] or "no detail"
        rebuild = rebuild or (read_manifest(path) or {}).get("producer")
        raise ArtifactError(path, f"cannot be read ({type(error).__name__}: {what})", rebuild) from error


def manifests_under(roots: list[Path]) -> Iterator[Path]:
    for root in roots:
        for folder, subfolders, names in os.walk(root):
            subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
            for name in sorted(names):
                if name.endswith(SUFFIX) and not name.startswith("."):
                    yield Path(folder) / name


def move_aside(path: Path) -> Path:
    aside = path.with_name(ASIDE + path.name)
    os.replace(path, aside)
    forget(path)
    return aside


def sweep(roots: list[Path]) -> list[str]:
    """Move every damaged file under `roots` (and the target Make rebuilds it through) aside; one line each.

    A file whose size and mtime match its manifest is not read. One whose mtime alone differs (a copy, a touch)
    is hashed once: if its content is intact the manifest takes the new mtime, so the next sweep reads nothing."""
    lines = []
    for record in manifests_under(roots):
        path = record.with_name(record.name[: -len(SUFFIX)])
        try:
            state = path.stat()
        except FileNotFoundError:
            continue  # make rebuilds a missing file by itself
        try:
            manifest = read_manifest(path)
            if manifest is None:
                continue  # removed since the walk saw it
            problem = problem_of(path, manifest, state)
        except ArtifactError as error:
            manifest, problem = {}, error.problem
        except OSError as error:  # unreadable: its loader will say so; make cannot fix it
            lines.append(f"make: {shown(path)} cannot be checked: {error}")
            continue
        if problem is None:
            if state.st_mtime_ns != manifest["mtime_ns"] and path.stat().st_mtime_ns == state.st_mtime_ns:
                with contextlib.suppress(OSError):  # a read-only tree: the next sweep hashes it again
                    _write_json(record, {**manifest, "mtime_ns": state.st_mtime_ns})
            continue
        target = path.parent / manifest["target"] if manifest.get("target") else None
        try:
            moved = [move_aside(path)] + ([move_aside(target)] if target is not None and target.is_file() else [])
        except OSError as error:
            lines.append(f"make: {shown(path)} {problem}, and it cannot be moved aside: {error}")
            continue
        rebuild = manifest.get("producer") or f"make {shown(target or path)}"
        names = " and ".join(shown(aside) for aside in moved)
        lines.append(f"make: {shown(path)} {problem}; moved aside to {names}, so make rebuilds it (`{rebuild}`)")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m pipeline.manifests", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    sweeping = commands.add_parser("sweep", help="Move damaged files aside so that make rebuilds them.")
    sweeping.add_argument("roots", nargs="+", type=Path)
    checking = commands.add_parser("check", help="One line per missing or damaged file; exit 2 if any.")
    checking.add_argument("--deep", action="store_true", help="Hash every file, even one whose mtime matches.")
    checking.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args(argv)
    if args.command == "sweep":
        for line in sweep(args.roots):
            print(line, file=sys.stderr)
        return 0
    failed = False
    for path in args.files:
        try:
            check(path, deep=args.deep)
        except ArtifactError as error:
            print(f"error: {error}", file=sys.stderr)
            failed = True
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
