"""The results store: embedded SQLite (WAL), one row per finished sweep cell or slice curve.

Schema version 4:
  meta(key, value)            application = 'robust', schema_version = '4'
  runs(id, spec_hash UNIQUE, config JSON, models JSON, data_hash, package_version, command,
       started, finished)     config also holds `curves`: per perturbation label what a
                              summary needs (bit-width level, level axis, clean at level 0)
  cells(run_id, model, model_hash, optimizer, mode, perturbation, layer, level, seed,
        samples, n, accuracy, nll, brier, ece, entropy, expected_entropy, mutual_information,
        disagreement, spike_rates JSON, versions JSON, efficiency JSON (NeuroBench's metrics per
        inference, averaged over the cell's networks; NULL where not measured), time_s, created,
        example_correct BLOB (numpy.packbits of per-example correctness, split order),
        example_nll BLOB (float32 per-example NLL),
        example_confidence BLOB (float32 per-example top-class probability, for reliability diagrams))
        PRIMARY KEY (run_id, model_hash, mode, perturbation, layer, level, seed)
  slices(id, spec_hash UNIQUE, config JSON, models JSON, data_hash, package_version, command,
         started, finished)   one per `robust slice` configuration
  slice_curves(slice_id, model, model_hash, optimizer, mode, direction, compute, bn, coords JSON,
         shape JSON, loss BLOB (float64, row-major over the grid), accuracy BLOB (float64),
         eigenvalues JSON (hessian directions), time_s, created)
         PRIMARY KEY (slice_id, model_hash, mode, direction)
  failures(kind, run_id, unit, error, attempts, created)   created on first use: units of a
         sweep or slice that raised on every attempt (the run stays unfinished; a rerun retries)
  skipped(run_id, model, model_hash, mode, perturbation, layer, level, reason)   created on
         first use: levels not run because a milder level of the curve had every draw at chance
Older stores are migrated in place on open (1 -> 2: per-example columns; 2 -> 3: slice tables,
example_confidence; 3 -> 4: efficiency).

`samples` is the compute of the cell's mode: networks evaluated per prediction (1 for
point/mean, M for chips/bma/ensemble). Each cell is committed in its own transaction as
it finishes, so a killed sweep loses at most the cell in flight; rerunning the same
configuration (same spec hash) resumes with the missing cells. A clean (unperturbed)
baseline is stored per (model, mode) as perturbation 'clean', level 0, seed 0.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sqlite3
import time
import urllib.parse
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from basics.errors import BadInput
from robustness.store import rows as store_rows
from robustness.store.cell import Cell
from robustness.store.schema import (DEFAULT_STORE, KEY_COLUMNS, SCHEMA_VERSION, SLICE_COLUMNS, STORED_COLUMNS,
                                     create_tables, discard_tables, migrate, schema_damage)


def default_path() -> str:
    return os.environ.get("ROBUST_STORE") or DEFAULT_STORE


def _operational(path: str, e: sqlite3.OperationalError) -> Exception:
    """A write that SQLite refused, as a one-line error (what was committed before stays)."""
    msg = str(e)
    if "locked" in msg or "busy" in msg:
        return BadInput(f"{path}: results store is locked by another process")
    if "disk is full" in msg or "disk I/O" in msg:
        return BadInput(f"{path}: {msg}: every cell committed so far is kept; free space and rerun to resume")
    if "readonly" in msg:
        return BadInput(f"{path}: results store is read-only ({msg})")
    return BadInput(f"{path}: results store refused a write ({msg})")


class _Locked(Exception):
    """Another process held the store while this one opened it (retried by Store.open)."""


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class Store:
    """A results store on disk. Open with `Store.open(path, create=...)`."""

    def __init__(self, path: str, conn: sqlite3.Connection):
        self.path = path
        self.conn = conn

    @classmethod
    def open(cls, path: str | os.PathLike, create: bool = False, timeout: float | None = None,
             readonly: bool = False) -> "Store":
        """Open (or with `create`, create) a store; anything else is a one-line BadInput.
        A write waits up to `timeout` s (default $ROBUST_STORE_TIMEOUT or 30) for another
        process's write to finish before the store counts as locked.

        `readonly` (report, check, export) never writes the file: it opens it read-only,
        on a read-only mount too, and reads a store of an older schema through a migrated
        copy in memory instead of migrating it in place."""
        if timeout is None:
            try:
                timeout = float(os.environ.get("ROBUST_STORE_TIMEOUT", "30"))
            except ValueError:
                raise BadInput(f"ROBUST_STORE_TIMEOUT={os.environ['ROBUST_STORE_TIMEOUT']!r} is not a number") from None
        p = Path(path)
        if p.is_dir():
            raise BadInput(f"{p}: is a directory, expected a results store file")
        if not p.exists():
            if not create:
                raise BadInput(f"{p}: no results store here (run `robust sweep` first, or pass --out/ROBUST_STORE)")
            try:
                p.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise BadInput(f"{p}: cannot create the results store's folder ({e.strerror or e})") from None
        elif p.stat().st_size > 0:
            with open(p, "rb") as f:
                if f.read(16) != b"SQLite format 3\x00":
                    raise BadInput(f"{p}: not a results store (not an SQLite file)")
        new_file = not p.exists()
        # SQLite answers "locked" at once, without waiting out the busy timeout, to a
        # connection that switches a new file to WAL while another process does the same;
        # so a lock while opening is retried until the timeout has passed.
        deadline = time.monotonic() + timeout
        pause = 0.01
        while True:
            try:
                if readonly:
                    return cls(str(p), cls._connect_readonly(p, max(deadline - time.monotonic(), 0.0)))
                return cls(str(p), cls._connect(p, create, max(deadline - time.monotonic(), 0.0), new_file))
            except _Locked:
                if time.monotonic() + pause > deadline:
                    raise BadInput(f"{p}: results store is locked by another process") from None
                time.sleep(pause)
                pause = min(pause * 2, 0.5)

    @staticmethod
    def _connect_readonly(p: Path, timeout: float) -> sqlite3.Connection:
        """A connection that only reads. Where the file can be written, a plain connection
        that issues no write (SQLite then removes its WAL files on close, as after a sweep);
        on a read-only mount, or where even the WAL's shared-memory file cannot be made (a
        full disk), a read-only one, and failing that an immutable one: nobody can be
        writing such a file."""
        uri = "file:" + urllib.parse.quote(str(p.resolve()))
        attempts = ([str(p), False] if os.access(p, os.W_OK) and os.access(p.parent, os.W_OK) else []) + \
            [uri + "?mode=ro", True, uri + "?mode=ro&immutable=1", True]
        for target, as_uri in zip(attempts[::2], attempts[1::2]):
            conn = None
            try:
                conn = sqlite3.connect(target, uri=as_uri, timeout=timeout, isolation_level=None)
                conn.execute("SELECT name FROM sqlite_master LIMIT 1").fetchall()
                break
            except sqlite3.OperationalError as e:
                if conn is not None:
                    conn.close()
                if "locked" in str(e) or "busy" in str(e):
                    raise _Locked from None
        else:
            raise BadInput(f"{p}: cannot open results store for reading")
        return Store._checked(conn, p, create=False, new_file=False, readonly=True)

    @staticmethod
    def _connect(p: Path, create: bool, timeout: float, new_file: bool) -> sqlite3.Connection:
        """One attempt at opening: the checked connection, `_Locked`, or a one-line BadInput."""
        return Store._checked(sqlite3.connect(str(p), timeout=timeout, isolation_level=None), p, create, new_file)

    @staticmethod
    def _checked(conn: sqlite3.Connection, p: Path, create: bool, new_file: bool,
                 readonly: bool = False) -> sqlite3.Connection:
        """The connection once the file is known to be a store of this schema (created when
        empty and `create`); `_Locked`, or a one-line BadInput naming what is wrong."""
        try:
            conn.row_factory = sqlite3.Row
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if tables and "meta" not in tables:
                conn.close()
                raise BadInput(f"{p}: an SQLite file but not a robust results store")
            if tables:
                meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
                if meta.get("application") != "robust":
                    conn.close()
                    raise BadInput(f"{p}: an SQLite file but not a robust results store")
                if meta.get("schema_version") in ("1", "2", "3"):
                    if readonly:  # the file stays as it is: its migrated copy lives in memory
                        memory = sqlite3.connect(":memory:", isolation_level=None)
                        conn.backup(memory)
                        conn.close()
                        conn = memory
                        conn.row_factory = sqlite3.Row
                    migrate(conn)
                    meta["schema_version"] = str(SCHEMA_VERSION)
                if meta.get("schema_version") != str(SCHEMA_VERSION):
                    conn.close()
                    raise BadInput(f"{p}: results store schema version {meta.get('schema_version')} is not "
                                   f"supported (this robust reads version {SCHEMA_VERSION})")
                damage = schema_damage(conn)
                if damage:
                    conn.close()
                    raise BadInput(f"{p}: damaged results store ({damage}); nothing was read or written")
            elif create:
                create_tables(conn)
            else:
                conn.close()
                raise BadInput(f"{p}: empty file, not a results store")
        except sqlite3.OperationalError as e:
            msg = str(e)
            if "locked" in msg or "busy" in msg:
                if conn is not None:  # another process holds the file: never remove it
                    conn.close()
                raise _Locked from None
            discard_tables(conn, p, new_file)
            raise BadInput(f"{p}: cannot open results store ({msg})") from None
        except sqlite3.DatabaseError as e:
            discard_tables(conn, p, new_file)
            raise BadInput(f"{p}: not a results store ({e})") from None
        return conn

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _write(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Cursor:
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            cur = self.conn.execute(sql, tuple(params))
            self.conn.execute("COMMIT")
            return cur
        except sqlite3.OperationalError as e:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise _operational(self.path, e) from None

    # --- runs ---------------------------------------------------------------------------------

    def _find_or_start(self, table: str, spec_hash: str, config: dict, models: list[dict], data_hash: str,
                       version: str, command: str) -> tuple[int, bool]:
        """The row of this spec in `runs` or `slices` (resumed) or a new one; (id, resumed)."""
        # Look up and insert under one write lock: two processes starting the same run get one row.
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            row = self.conn.execute(f"SELECT id FROM {table} WHERE spec_hash = ?", (spec_hash,)).fetchone()
            if row is None:
                cur = self.conn.execute(
                    f"INSERT INTO {table} (spec_hash, config, models, data_hash, package_version, command, started) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)", (spec_hash, json.dumps(config, sort_keys=True), json.dumps(models),
                                                     data_hash, version, command, _now()))
            self.conn.execute("COMMIT")
        except sqlite3.OperationalError as e:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise _operational(self.path, e) from None
        return (int(row[0]), True) if row is not None else (int(cur.lastrowid), False)

    def run_for(self, spec_hash: str, config: dict, models: list[dict], data_hash: str, version: str,
                command: str) -> tuple[int, bool]:
        """The run of this spec (resumed) or a new one; returns (run id, resumed)."""
        return self._find_or_start("runs", spec_hash, config, models, data_hash, version, command)

    def finish_run(self, run_id: int) -> None:
        self._write("UPDATE runs SET finished = ? WHERE id = ?", (_now(), run_id))

    def runs(self) -> list[dict]:
        """Every sweep run, its config and models parsed (damage is a one-line BadInput)."""
        return [store_rows.run(self.path, "runs", dict(r)) for r in self.conn.execute("SELECT * FROM runs ORDER BY id")]

    def slices(self) -> list[dict]:
        """Every slice run, its config and models parsed."""
        return [store_rows.run(self.path, "slices", dict(r))
                for r in self.conn.execute("SELECT * FROM slices ORDER BY id")]

    # --- cells --------------------------------------------------------------------------------

    def done_keys(self, run_id: int) -> dict[tuple, float]:
        """Key -> accuracy of every stored cell of a run (what a resumed sweep skips)."""
        rows = self.conn.execute(f"SELECT {', '.join(KEY_COLUMNS)}, accuracy FROM cells WHERE run_id = ?", (run_id,))
        return {tuple(r)[:-1]: r[-1] for r in rows}

    def add_cell(self, row: dict) -> bool:
        """Commit one finished cell (its own transaction); a duplicate key is ignored (another
        process stored it first). True when this call stored it."""
        vals = dict(row)
        vals.setdefault("created", _now())
        for k in ("spike_rates", "versions", "efficiency"):
            if not isinstance(vals.get(k), (str, type(None))):
                vals[k] = json.dumps(vals[k])
        cur = self._write(f"INSERT OR IGNORE INTO cells ({', '.join(STORED_COLUMNS)}) VALUES "
                          f"({', '.join('?' for _ in STORED_COLUMNS)})", [vals.get(c) for c in STORED_COLUMNS])
        return cur.rowcount == 1

    def cells(self, run_id: int | None = None) -> list[Cell]:
        """Every cell (of one run), decoded and checked field by field (`store_rows.cell`)."""
        sql = "SELECT rowid, * FROM cells" + (" WHERE run_id = ?" if run_id is not None else "") + \
              " ORDER BY run_id, model, mode, perturbation, layer, level, seed"
        return [store_rows.cell(self.path, dict(r)) for r in self.conn.execute(sql, () if run_id is None else (run_id,))]


    # --- failures (units that raised on every attempt; created on first use) ------------------

    def _insert_creating(self, create: str, insert: str, values: tuple) -> None:
        """One insert into a table created on first use, in one transaction."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute(create)
            self.conn.execute(insert, values)
            self.conn.execute("COMMIT")
        except sqlite3.OperationalError as e:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise _operational(self.path, e) from None

    def add_failure(self, kind: str, run_id: int, unit: str, error: str, attempts: int) -> None:
        self._insert_creating("CREATE TABLE IF NOT EXISTS failures (kind TEXT NOT NULL, run_id INTEGER NOT NULL, "
                              "unit TEXT NOT NULL, error TEXT, attempts INTEGER, created TEXT, "
                              "PRIMARY KEY (kind, run_id, unit))",
                              "INSERT OR REPLACE INTO failures VALUES (?, ?, ?, ?, ?, ?)",
                              (kind, run_id, unit, error, attempts, _now()))

    def _has_failures_table(self) -> bool:
        return self.conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='failures'").fetchone() \
            is not None

    def failures(self, kind: str, run_id: int) -> list[dict]:
        if not self._has_failures_table():
            return []
        return [dict(r) for r in self.conn.execute("SELECT unit, error, attempts, created FROM failures WHERE "
                                                   "kind = ? AND run_id = ? ORDER BY unit", (kind, run_id))]

    def clear_failures(self, kind: str, run_id: int) -> None:
        """Forget a run's recorded failures (a rerun retries those units and records them anew)."""
        if self._has_failures_table():
            self._write("DELETE FROM failures WHERE kind = ? AND run_id = ?", (kind, run_id))

    # --- skipped levels (harsher than a level where every draw was at chance) ------------------

    def add_skipped(self, run_id: int, model: str, model_hash: str, mode: str, perturbation: str, layer: str,
                    level: float, reason: str) -> None:
        self._insert_creating("CREATE TABLE IF NOT EXISTS skipped (run_id INTEGER NOT NULL, model TEXT NOT NULL, "
                              "model_hash TEXT NOT NULL, mode TEXT NOT NULL, perturbation TEXT NOT NULL, "
                              "layer TEXT NOT NULL, level REAL NOT NULL, reason TEXT NOT NULL, "
                              "PRIMARY KEY (run_id, model_hash, mode, perturbation, layer, level))",
                              "INSERT OR REPLACE INTO skipped VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                              (run_id, model, model_hash, mode, perturbation, layer, float(level), reason))

    def skipped(self, run_id: int) -> list[dict]:
        """Levels a run skipped, with the reason: (model, mode, perturbation, layer, level, reason)."""
        if self.conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='skipped'").fetchone() is None:
            return []
        return [dict(r) for r in self.conn.execute(
            "SELECT model, model_hash, mode, perturbation, layer, level, reason FROM skipped WHERE run_id = ? "
            "ORDER BY model, mode, perturbation, layer, level", (run_id,))]

    # --- slices -------------------------------------------------------------------------------

    def slice_for(self, spec_hash: str, config: dict, models: list[dict], data_hash: str, version: str,
                  command: str) -> tuple[int, bool]:
        """The slice run of this spec (resumed) or a new one; returns (id, resumed)."""
        return self._find_or_start("slices", spec_hash, config, models, data_hash, version, command)

    def finish_slice(self, slice_id: int) -> None:
        self._write("UPDATE slices SET finished = ? WHERE id = ?", (_now(), slice_id))

    def slice_done(self, slice_id: int) -> set[tuple[str, str, int]]:
        rows = self.conn.execute("SELECT model_hash, mode, direction FROM slice_curves WHERE slice_id = ?",
                                 (slice_id,))
        return {tuple(r) for r in rows}

    def add_curve(self, row: dict) -> bool:
        """Commit one finished slice curve (its own transaction); arrays go in as float64 BLOBs.
        True when this call stored it (False: another process did first)."""
        vals = dict(row)
        vals.setdefault("created", _now())
        for k in ("loss", "accuracy"):
            vals[k] = np.asarray(vals[k], dtype=np.float64).tobytes()
        for k in ("coords", "shape", "eigenvalues"):
            vals[k] = None if vals.get(k) is None else json.dumps(vals[k])
        cur = self._write(f"INSERT OR IGNORE INTO slice_curves ({', '.join(SLICE_COLUMNS)}) VALUES "
                          f"({', '.join('?' for _ in SLICE_COLUMNS)})", [vals.get(c) for c in SLICE_COLUMNS])
        return cur.rowcount == 1

    def curves(self, slice_id: int) -> list[dict]:
        """Every curve of a slice run, arrays decoded and shaped, in (model, mode, direction) order."""
        return [store_rows.curve(self.path, dict(r)) for r in self.conn.execute(
            "SELECT rowid, * FROM slice_curves WHERE slice_id = ? ORDER BY model, mode, direction", (slice_id,))]
