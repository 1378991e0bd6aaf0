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


def require_utf8(path: str) -> str:
    """A path the results store and reports can hold: its name must be valid UTF-8 (a file
    name with a stray byte decodes to a lone surrogate that SQLite and TOML refuse)."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        raise BadInput(f"{str(path).encode('utf-8', 'backslashreplace').decode()}: the file name is not valid "
                       f"UTF-8; rename it (results stores keep names as text)") from None
    return str(path)
