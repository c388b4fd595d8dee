"""Errors users can act on. The CLI prints each as one line plus a hint, no traceback."""


class SerError(Exception):
    """Base class: `message` says what is wrong, `hint` says what to do about it."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class UserInputError(SerError):
    """A bad option value or combination of options."""


class UnknownNameError(UserInputError):
    """A name that is not in a registry (model, head, corpus, ...)."""


class ManifestError(SerError):
    """A manifest that is missing, malformed or inconsistent."""


class CorpusError(SerError):
    """A corpus root that does not have the corpus's published layout."""


class AudioError(SerError):
    """An audio file that cannot be used; names the utterance."""

    def __init__(self, utt_id: str, message: str, hint: str | None = None):
        super().__init__(f"{utt_id}: {message}", hint)
        self.utt_id = utt_id
        self.reason = message


class ModelLoadError(SerError):
    """A backbone that cannot be found or loaded."""


class CacheError(SerError):
    """A feature cache that is missing, incomplete or does not match the request."""


class FoldError(SerError):
    """An evaluation protocol that cannot be built (or would leak speakers)."""


class TrainingError(SerError):
    """A training run that cannot start or continue."""


class DivergedError(TrainingError):
    """Training produced a non-finite loss or output; nothing of the run is scored."""


class DamagedFileError(SerError):
    """A run, model or record file that is there but cannot be read (empty, truncated, invalid)."""


class OutputBusyError(SerError):
    """An output (a cache, an export, a fold of a run) that another process is writing right now."""


class WriteError(SerError):
    """A file that cannot be written (disk full, file-size limit, read-only, a path in the way)."""


# errno → what to do about it
_WRITE_HINTS = {
    "ENOSPC": "free some disk space (or write elsewhere with --out/--workdir), then rerun: finished work is kept",
    "EDQUOT": "your disk quota is used up: free some space, then rerun: finished work is kept",
    "EFBIG": "the file-size limit (`ulimit -f`) is too small for it: raise it, then rerun: finished work is kept",
    "EROFS": "the file system is read-only: use --workdir/--out on a writable one",
    "EACCES": "you may not write there: use --workdir/--out elsewhere, or fix its permissions",
    "EPERM": "you may not write there: use --workdir/--out elsewhere, or fix its permissions",
    "EISDIR": "a folder is in the way: remove it, or choose another path",
    "ENOTDIR": "a file is in the way where a folder should be: remove it, or choose another path",
    "EEXIST": "a file is in the way where a folder should be: remove it, or choose another path",
}


def os_failure(error: OSError) -> SerError | None:
    """The one-line form of an OSError that names a file (None for one without an errno)."""
    import errno as errno_names

    if not error.errno:
        return None
    if errno_names.errorcode.get(error.errno) in _WRITE_HINTS:
        return write_failure(error.filename, error)
    return SerError(f"{error.filename or 'a file'}: {error.strerror}", "check the path and rerun")


def write_failure(path, error: OSError) -> WriteError:
    """One line naming the path and the cause of a failed write (an OSError with an errno)."""
    import errno as errno_names
    import os

    name = errno_names.errorcode.get(error.errno or 0, "")
    cause = os.strerror(error.errno) if error.errno else str(error)
    where = path or getattr(error, "filename", None)
    return WriteError(f"cannot write {where}: {cause}", _WRITE_HINTS.get(name, "check the path and rerun"))
