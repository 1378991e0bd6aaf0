"""The results store's schema (version 4): tables, columns, migration of older stores,
race-free creation, and the check that an opened store is whole. See `robustness.store.database`
for what each table holds.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

SCHEMA_VERSION = 4
DEFAULT_STORE = "robust-results.db"
METRIC_COLUMNS = ("accuracy", "nll", "brier", "ece", "entropy", "expected_entropy", "mutual_information",
                  "disagreement")
OPTIONAL_METRICS = ("expected_entropy", "mutual_information")  # averaging modes only: NULL means absent
KEY_COLUMNS = ("model_hash", "mode", "perturbation", "layer", "level", "seed")
EXAMPLE_COLUMNS = ("example_correct", "example_nll", "example_confidence")
CELL_COLUMNS = ("run_id", "model", "model_hash", "optimizer", "mode", "perturbation", "layer", "level", "seed",
                "samples", "n", *METRIC_COLUMNS, "spike_rates", "versions", "efficiency", "time_s", "created")
STORED_COLUMNS = CELL_COLUMNS + EXAMPLE_COLUMNS

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY, spec_hash TEXT UNIQUE NOT NULL, config TEXT NOT NULL, models TEXT NOT NULL,
    data_hash TEXT, package_version TEXT, command TEXT, started TEXT, finished TEXT);
CREATE TABLE IF NOT EXISTS cells (
    run_id INTEGER NOT NULL REFERENCES runs(id), model TEXT NOT NULL, model_hash TEXT NOT NULL,
    optimizer TEXT, mode TEXT NOT NULL, perturbation TEXT NOT NULL, layer TEXT NOT NULL DEFAULT '',
    level REAL NOT NULL, seed INTEGER NOT NULL, samples INTEGER, n INTEGER,
    {", ".join(f"{c} REAL" for c in METRIC_COLUMNS)},
    spike_rates TEXT, versions TEXT, efficiency TEXT, time_s REAL, created TEXT, example_correct BLOB,
    example_nll BLOB,
    example_confidence BLOB,
    PRIMARY KEY (run_id, {", ".join(KEY_COLUMNS)}));
CREATE TABLE IF NOT EXISTS slices (
    id INTEGER PRIMARY KEY, spec_hash TEXT UNIQUE NOT NULL, config TEXT NOT NULL, models TEXT NOT NULL,
    data_hash TEXT, package_version TEXT, command TEXT, started TEXT, finished TEXT);
CREATE TABLE IF NOT EXISTS slice_curves (
    slice_id INTEGER NOT NULL REFERENCES slices(id), model TEXT NOT NULL, model_hash TEXT NOT NULL,
    optimizer TEXT, mode TEXT NOT NULL, direction INTEGER NOT NULL, compute INTEGER, bn TEXT,
    coords TEXT NOT NULL, shape TEXT NOT NULL, loss BLOB NOT NULL, accuracy BLOB NOT NULL, eigenvalues TEXT,
    time_s REAL, created TEXT,
    PRIMARY KEY (slice_id, model_hash, mode, direction));
"""
SLICE_COLUMNS = ("slice_id", "model", "model_hash", "optimizer", "mode", "direction", "compute", "bn", "coords",
                 "shape", "loss", "accuracy", "eigenvalues", "time_s", "created")


def migrate(conn: sqlite3.Connection) -> None:
    """Any older version -> current, in one transaction: per-example columns (v2, empty for
    old cells), the slice tables and per-example confidence (v3), efficiency (v4, NULL for old
    cells: not measured)."""
    conn.execute("BEGIN IMMEDIATE")
    cols = {r[1] for r in conn.execute("PRAGMA table_info(cells)")}
    for c in EXAMPLE_COLUMNS:
        if c not in cols:
            conn.execute(f"ALTER TABLE cells ADD COLUMN {c} BLOB")
    if "efficiency" not in cols:
        conn.execute("ALTER TABLE cells ADD COLUMN efficiency TEXT")
    for stmt in filter(str.strip, _SCHEMA.split(";")):
        conn.execute(stmt)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
    conn.execute("COMMIT")


_EXPECTED = {"runs": ("id", "spec_hash", "config", "models", "data_hash", "package_version", "command", "started",
                     "finished"),
             "cells": STORED_COLUMNS, "slices": ("id", "spec_hash", "config", "models", "data_hash",
                                                  "package_version", "command", "started", "finished"),
             "slice_curves": SLICE_COLUMNS}


def schema_damage(conn: sqlite3.Connection) -> str | None:
    """What is missing from a store of the current schema (a dropped table or column), or None."""
    for table, cols in _EXPECTED.items():
        have = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
        if not have:
            return f"table {table} is missing"
        lost = [c for c in cols if c not in have]
        if lost:
            return f"table {table} lacks column {lost[0]}"
    return None


def discard_tables(conn: sqlite3.Connection | None, p: Path, new_file: bool) -> None:
    """After a failed open: close, and remove a store file this call created (e.g. on a
    full disk), so that no store without its tables is left behind."""
    if conn is not None:
        conn.close()
    if new_file and p.exists():
        try:  # a concurrent process may have created the store meanwhile: keep a store with tables
            with closing(sqlite3.connect(str(p), timeout=1)) as c:
                if c.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone():
                    return
        except sqlite3.Error:
            pass
        for f in (p, p.with_name(p.name + "-wal"), p.with_name(p.name + "-shm"), p.with_name(p.name + "-journal")):
            if f.exists():
                f.unlink()


def create_tables(conn: sqlite3.Connection) -> None:
    """The schema of a new store, in one transaction. Two processes may race to create the
    same file: the loser finds the tables made once it holds the write lock and adds nothing."""
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("BEGIN IMMEDIATE")
    try:
        for stmt in filter(str.strip, _SCHEMA.split(";")):
            conn.execute(stmt)
        conn.execute("INSERT OR IGNORE INTO meta VALUES ('application', 'robust'), ('schema_version', ?)",
                     (str(SCHEMA_VERSION),))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
