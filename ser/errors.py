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
