"""Domain errors. The CLI turns each into a one-line message and exit code 2."""


class BadInput(ValueError):
    """Input the user can fix: a missing file, a malformed range, a corrupt checkpoint."""
