"""Files and folders that a kill at any instant leaves whole: the old version or the new one, never a torn one.
Every write goes to a temporary sibling (`.NAME.tmp`), is flushed and fsynced, then renamed into place. A failed
write (a full disk) raises OSError and leaves the previous version; the callers turn it into their own error."""
import ctypes
import errno
import os
import shutil
import sys
from pathlib import Path


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (or its type), to keep an error on one line."""
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def write_file(path: Path, write) -> None:
    """Write `path` atomically: `write(f)` fills the binary file."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def holds_working_folder(path: Path) -> bool:
    """Whether `path` is the working folder or one above it (or a link to one): a folder that is not to be replaced
    as a whole."""
    path, cwd = Path(os.path.realpath(path)), Path.cwd()
    return path == cwd or path in cwd.parents


def write_folder(path: Path, files: dict[str, bytes]) -> None:
    """Write the folder `path` holding `files` (name -> bytes) atomically, replacing any folder there. A symbolic link
    is followed: the folder it points to is replaced, and the link stays. A file at `path` is refused (OSError)
    before anything is moved: the swap would move it away under a temporary name."""
    if holds_working_folder(path):
        raise OSError(errno.EBUSY, "the working folder, or one above it, is not replaced as a whole", str(path))
    # the link's target, not the link: swapped, the link would become the temporary name (and the folder it points
    # to get nothing); and "dir/.." has a name to put the sibling beside
    path = Path(os.path.realpath(path))
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "exists and is not a folder", str(path))
    tmp = path.with_name(f".{path.name}.tmp")  # one writer per folder: a killed write's leftover is reused
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name, data in files.items():
            with open(tmp / name, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        fsync(tmp)
        replace_folder(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def replace_folder(new: Path, path: Path) -> None:
    """Put the folder `new` at `path`, replacing any folder there, so that a kill at any instant leaves the old
    folder or the new one at `path`. rename() cannot replace a non-empty folder; Linux's renameat2 with
    RENAME_EXCHANGE swaps the two names in one atomic step. Elsewhere two renames, with an instant in between
    where `path` is missing."""
    if path.exists():
        if not _exchange(new, path):
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(new, path)
            new = old
        fsync(path.parent)
        shutil.rmtree(new)  # now the old folder
    else:
        os.replace(new, path)
        fsync(path.parent)


def _exchange(a: Path, b: Path) -> bool:
    """Swap the names a and b atomically (Linux renameat2, RENAME_EXCHANGE); False where unavailable."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None) if sys.platform == "linux" else None
    if renameat2 is None:
        return False
    AT_FDCWD, RENAME_EXCHANGE = -100, 2
    if renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) != 0:
        err = ctypes.get_errno()
        if err in (errno.EINVAL, errno.ENOSYS):  # a file system or kernel without RENAME_EXCHANGE
            return False
        raise OSError(err, os.strerror(err), str(b))
    return True


def fsync(path: Path) -> None:
    """fsync a folder (or file) by path: a rename is durable once its folder is."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
