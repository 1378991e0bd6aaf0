"""Domain errors. The CLI turns each into a one-line message and exit code 2."""


class BadInput(ValueError):
    """Input the user can fix: a missing file, a malformed range, a corrupt checkpoint."""


class CheckpointError(BadInput):
    """A file that is missing, not a checkpoint, of another version, or inconsistent. Defined
    here, not beside the loader, so that commands that never load a model need no torch."""


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none)."""
    s = str(e).strip()
    return s.splitlines()[0] if s else type(e).__name__
