"""Reading a user's TOML file (sweep.toml, robust.toml) with one-line errors for every way it
can fail. A leaf module, for the sweep's config and the gate's policy alike."""

from __future__ import annotations

import tomllib
from pathlib import Path

from basics.errors import BadInput, first_line


def load_toml(path: str | Path, what: str = "TOML file") -> dict:
    """The file's tables; a one-line error for a missing or unreadable file, bad syntax or
    encoding, or nesting too deep for the parser."""
    p = Path(path)
    if p.is_dir():
        raise BadInput(f"{p}: is a directory, expected a {what}")
    if not p.is_file():
        raise BadInput(f"{p}: no such {what}")
    try:
        return tomllib.loads(p.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise BadInput(f"{p}: not valid TOML ({first_line(e)})") from None
    except RecursionError:
        raise BadInput(f"{p}: not a usable {what} (values nested too deep to read)") from None
    except OSError as e:
        raise BadInput(f"{p}: cannot read ({e.strerror or e})") from None
