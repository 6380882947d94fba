"""Where a report may go: the output folder's checks, and its staging folders.

Every command (``infer``, ``compare``, ``calibrate``) calls
:func:`check_output_dir` before anything is compiled or sampled, so an output
folder that cannot be written, or whose writing would replace the user's data,
is one clear error at once instead of a traceback after the fit.
:func:`llmsize.outputs.io.staged_output` writes a report into a staging folder beside
the output folder (``.NAME.XXXXXXXX.partial``), holding a lock on it while the
run lives; :func:`remove_stale_staging` removes the ones of killed runs.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import shutil
import stat
import time
from collections.abc import Iterable
from pathlib import Path

from llmsize.exceptions import LlmsizeError, one_line

try:  # POSIX: a live run holds a lock on its staging folder
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

#: Files that mark a folder as one llmsize wrote (``infer``, ``compare``,
#: ``calibrate``): only such a folder, or an empty one, is replaced by a report.
REPORT_MARKERS = (
    "summary.csv",
    "diagnostics.json",
    "hypothesis.json",
    "comparison.csv",
    "evidence.csv",
    "hypotheses.json",
    "calibration.csv",
    "metrics.csv",
    "provenance.json",
)

#: Folders a run of ``calibrate`` writes first (its fits, as they finish).
RESUME_PREFIXES = ("fits-", "sbc-")

#: Bytes a staging name adds to the output folder's name: ``.NAME.XXXXXXXX.partial``
#: for the new report, ``.NAME.old-PID.partial`` for the previous one set aside
#: (a PID has at most 10 digits).
STAGING_EXTRA = len(".") + len(".old-") + 10 + len(".partial")

#: Room left under PATH_MAX for the files a report holds (``family-NAME.html``...).
_FILE_ROOM = 96

#: A staging folder no live run holds is removed once it is this old (seconds): a
#: run creates its folder and locks it in the same breath, never this far apart.
STALE_AFTER_S = 5.0


def holds_output(names: Iterable[str]) -> bool:
    """Whether a folder holding ``names`` is one llmsize wrote (a report, a comparison,
    a calibration, or a calibration's first fits).
    """
    return any(n in REPORT_MARKERS or n.startswith(RESUME_PREFIXES) for n in names)


def _is_within(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies inside it (both resolved)."""
    return path == folder or path.is_relative_to(folder)


def _refuse(out: str, message: str) -> LlmsizeError:
    return LlmsizeError(one_line(message), file=out)


def check_output_dir(
    out_dir: str | Path,
    *,
    data_dir: str | Path | None = None,
    hypothesis_files: Iterable[str | Path] = (),
    replaces: bool = True,
) -> Path:
    """Refuse an output folder a run could not write, or whose writing would lose data.

    Called by every command (``infer``, ``compare``, ``calibrate``) and the
    Python entry points before anything is compiled or sampled, and again by
    :func:`llmsize.outputs.io.staged_output`. Raises :class:`~llmsize.exceptions.LlmsizeError` (one
    line naming the folder) when the folder:

    - is the file-system root, or is or contains the current working folder, the
      data folder, or the folder of a hypothesis file (a report replaces its
      folder whole: ``--out data`` would delete the data; ``calibrate``, which
      writes into its folder (``replaces=False``), would overwrite their files);
    - lies inside the data folder, or inside a hypothesis' folder (unless that
      folder is the working folder or above it, where ``reports/<name>`` lies);
    - exists and is not a folder, or is a non-empty folder that holds no output
      of llmsize's (:func:`holds_output`);
    - would be created under a file, or in a folder that cannot be written
      (permissions, a read-only file system);
    - has a name the file system cannot hold (a component longer than NAME_MAX,
      counting the staging folder's suffix, or a path longer than PATH_MAX).

    Returns the resolved folder. Nothing is created or changed.
    """
    shown = one_line(os.fspath(out_dir)) or "."
    harm = "a report replaces its folder whole" if replaces else "a run writes its files into it"
    try:
        target = Path(out_dir).resolve()
    except ValueError:  # an embedded NUL byte
        raise _refuse(shown, "the output folder's name holds a NUL byte") from None
    except (OSError, RuntimeError) as exc:  # a loop of symbolic links
        raise _refuse(shown, f"cannot resolve the output folder: {exc}") from None
    if target == Path(target.anchor):
        raise _refuse(shown, "the output folder is the file-system root; choose another --out")
    try:
        cwd: Path | None = Path.cwd().resolve()
    except OSError:  # the working folder was deleted
        cwd = None
    if cwd is not None and _is_within(cwd, target):
        what = "is" if cwd == target else "contains"
        raise _refuse(
            shown,
            f"the output folder {what} the current folder ({cwd}); {harm}: choose another --out",
        )
    folders: list[tuple[Path, str, bool]] = []
    if data_dir is not None:
        with contextlib.suppress(OSError, RuntimeError, ValueError):
            folders.append((Path(data_dir).resolve(), "the data folder", True))
    for file in hypothesis_files:
        with contextlib.suppress(OSError, RuntimeError, ValueError):
            folder = Path(file).resolve().parent
            # A hypothesis beside (or above) the working folder: reports/<name> lies in it.
            inside = cwd is None or not _is_within(cwd, folder)
            folders.append((folder, "the folder of hypothesis file " + Path(file).name, inside))
    for folder, label, inside_too in folders:
        if _is_within(folder, target):
            what = "is" if folder == target else "contains"
            raise _refuse(
                shown,
                f"the output folder {what} {label} ({folder}); {harm}: choose another --out",
            )
        if inside_too and target.is_relative_to(folder):
            raise _refuse(
                shown,
                f"the output folder lies inside {label} ({folder}); keep reports out of "
                "the inputs: choose another --out",
            )
    _check_writable(shown, target, replaces=replaces)
    return target


def _check_writable(shown: str, target: Path, *, replaces: bool) -> None:
    """The file-system half of :func:`check_output_dir` (see there)."""
    info = _existing_output(shown, target, replaces=replaces)
    # Where the run creates something: the staging folder beside the output folder
    # (``replaces``) or files inside it; for a new folder, the nearest existing
    # folder above it, in which the missing folders are made.
    if info is not None:
        where, missing = (target.parent if replaces else target), []
    else:
        where, missing = target.parent, [target.name]
    where, missing = _nearest_folder(shown, where, missing)
    _check_names(shown, target, where, missing, replaces=replaces)


def _existing_output(shown: str, target: Path, *, replaces: bool) -> os.stat_result | None:
    """The output folder's status, if it exists; refused unless it is a folder that is
    empty or holds an earlier output of llmsize's.
    """
    try:
        info = os.stat(target)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        if exc.errno != errno.ENAMETOOLONG:  # a name too long is explained below
            raise _refuse(shown, f"cannot use the output folder: {exc.strerror or exc}") from None
        return None
    if not stat.S_ISDIR(info.st_mode):
        raise _refuse(shown, "exists and is not a folder; choose another --out")
    try:
        names = os.listdir(target)
    except OSError as exc:
        raise _refuse(shown, f"cannot list the output folder: {exc.strerror}") from None
    if names and not holds_output(names):
        how = "replaces its folder whole" if replaces else "writes its files into it"
        raise _refuse(
            shown,
            "exists, is not empty and holds no output of llmsize's (no "
            f"{', '.join(REPORT_MARKERS[:3])}...); a run {how}: choose another --out, "
            "or empty it",
        )
    return info


def _nearest_folder(shown: str, where: Path, missing: list[str]) -> tuple[Path, list[str]]:
    """The nearest existing folder at or above ``where``, which must be writable, and
    the names of the folders to make below it.
    """
    while True:
        try:
            mode = os.stat(where).st_mode
            break
        except OSError as exc:
            if not isinstance(exc, FileNotFoundError | NotADirectoryError) and (
                exc.errno != errno.ENAMETOOLONG
            ):
                raise _refuse(shown, f"cannot use {where}: {exc.strerror or exc}") from None
            missing = [where.name, *missing]
            where = where.parent
    if not stat.S_ISDIR(mode):
        raise _refuse(shown, f"{where} is a file, not a folder: the output folder cannot be made")
    if not os.access(where, os.W_OK | os.X_OK):
        readonly = False
        with contextlib.suppress(OSError, AttributeError):
            readonly = bool(os.statvfs(where).f_flag & os.ST_RDONLY)
        why = "is on a read-only file system" if readonly else "is not writable"
        raise _refuse(shown, f"{where} {why}: the report cannot be written there")
    return where, missing


def _check_names(
    shown: str, target: Path, where: Path, missing: list[str], *, replaces: bool
) -> None:
    """Refuse folder names and a path longer than the file system under ``where`` holds."""
    name_max, path_max = 255, 4096
    with contextlib.suppress(OSError, ValueError, AttributeError):
        name_max = os.pathconf(where, "PC_NAME_MAX")
    with contextlib.suppress(OSError, ValueError, AttributeError):
        path_max = os.pathconf(where, "PC_PATH_MAX")
    for part in missing:
        if len(os.fsencode(part)) > name_max:
            raise _refuse(
                shown,
                f"a folder name of {len(os.fsencode(part))} bytes is longer than the file "
                f"system allows ({name_max})",
            )
    last = len(os.fsencode(target.name)) + (STAGING_EXTRA if replaces else 0)
    if last > name_max:
        raise _refuse(
            shown,
            f"the folder name is {len(os.fsencode(target.name))} bytes; with the staging "
            f"folder's {STAGING_EXTRA} more it is longer than the file system allows "
            f"({name_max}): use a shorter name",
        )
    if len(os.fsencode(str(target))) + STAGING_EXTRA + _FILE_ROOM > path_max:
        raise _refuse(shown, f"the path is too long for the file system (PATH_MAX {path_max})")


def output_error(exc: OSError, out_dir: str | Path) -> LlmsizeError:
    """A system error while writing a report, as one line naming the path."""
    where = f" ({exc.filename})" if exc.filename else ""
    return _refuse(one_line(str(out_dir)), f"cannot write the report: {exc.strerror or exc}{where}")


def remove(path: Path) -> None:
    """Remove a file, link or folder tree, whatever it is; errors ignored."""
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        with contextlib.suppress(OSError):
            path.unlink()
    else:
        shutil.rmtree(path, ignore_errors=True)


def lock(folder: Path) -> int | None:
    """Hold an exclusive lock on ``folder`` (a file descriptor to close), POSIX only."""
    if fcntl is None:
        return None
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def unlock(fd: int | None) -> None:
    """Release a lock of :func:`lock` (``None``: none was taken)."""
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)


def remove_stale_staging(parent: Path, name: str) -> list[Path]:
    """Remove the staging folders (``.NAME.*.partial``) of runs that were killed.

    A running :func:`llmsize.outputs.io.staged_output` holds a lock on its staging folder
    (and on the previous report it sets aside, ``.NAME.old-PID.partial``), so one
    that no process holds, and that is older than :data:`STALE_AFTER_S`, was
    left by a run killed before it could clean up (SIGKILL, a power cut).
    Returns the folders removed.
    """
    removed: list[Path] = []
    if fcntl is None:
        return removed
    pattern = glob.escape(f".{name}.") + "*.partial"
    try:
        candidates = sorted(parent.glob(pattern))
    except OSError:
        return removed
    for path in candidates:
        try:
            info = os.lstat(path)
        except OSError:
            continue
        if not stat.S_ISDIR(info.st_mode) or time.time() - info.st_mtime < STALE_AFTER_S:
            continue
        fd = lock(path)
        if fd is None:  # a live run holds it
            continue
        try:
            shutil.rmtree(path, ignore_errors=True)
        finally:
            unlock(fd)
        removed.append(path)
    return removed
