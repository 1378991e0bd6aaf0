"""The results store under faults: concurrent runs, a full disk, damaged files."""

import multiprocessing
import resource
import signal
import sqlite3
import subprocess
import sys

import pytest
from click.testing import CliRunner

from robustness.cli.main import cli
from robustness.store.database import Store


def _racer(args) -> tuple[int, int]:
    """One process: open (maybe create) the store, register the same run, add 20 cells."""
    path, worker = args
    with Store.open(path, create=True) as s:
        run_id, _ = s.run_for("same-spec", {"x": 1}, [], "data", "0", "race")
        stored = 0
        for seed in range(20):
            stored += s.add_cell({"run_id": run_id, "model": "m", "model_hash": "h", "optimizer": "adam",
                                  "mode": "point", "perturbation": "gaussian", "layer": "", "level": 0.1,
                                  "seed": seed, "samples": 1, "n": 10, "accuracy": 0.5, "nll": 1.0})
    return run_id, stored


@pytest.mark.parametrize("existing", [False, True])
def test_concurrent_runs_create_one_store_one_run_and_count_truly(tmp_path, existing):
    path = str(tmp_path / "race.db")
    if existing:
        Store.open(path, create=True).close()
    with multiprocessing.get_context("fork").Pool(8) as pool:
        results = pool.map(_racer, [(path, i) for i in range(8)])
    assert {r for r, _ in results} == {1}, "every process must find the same run"
    with Store.open(path) as s:
        assert len(s.runs()) == 1
        cells = s.cells(1)
    assert len(cells) == 20
    assert sum(n for _, n in results) == 20, "new-cell counts must add up to what is stored"


def test_open_waits_out_a_lock_sqlite_reports_at_once(tmp_path, monkeypatch):
    # Switching a new file to WAL while another process does the same fails at once with
    # "database is locked" (no busy wait); open retries until its timeout instead of failing.
    import robustness.store.database as store

    real, calls = store.create_tables, []

    def contended(conn):
        calls.append(1)
        if len(calls) <= 2:
            raise sqlite3.OperationalError("database is locked")
        real(conn)

    monkeypatch.setattr(store, "create_tables", contended)
    path = tmp_path / "new.db"
    with Store.open(path, create=True, timeout=5) as s:
        run_id, resumed = s.run_for("spec", {}, [], "data", "0", "test")
    assert len(calls) == 3 and (run_id, resumed) == (1, False)

    calls.clear()
    monkeypatch.setattr(store, "create_tables", lambda conn: (_ for _ in ()).throw(sqlite3.OperationalError("database is locked")))
    with pytest.raises(store.BadInput, match="locked by another process"):
        Store.open(tmp_path / "held.db", create=True, timeout=0.2)


def _sweep(db, *extra, limit_bytes=None):
    def lim():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run([sys.executable, "-m", "robustness.cli", "sweep", *extra, "--store", str(db), "-q"],
                          preexec_fn=lim if limit_bytes else None, capture_output=True, text=True)


def _rows(db):
    with sqlite3.connect(str(db)) as c:
        return c.execute("SELECT model_hash, mode, perturbation, level, seed, accuracy, nll, example_nll FROM cells "
                         "ORDER BY 1, 2, 3, 4, 5").fetchall()


@pytest.mark.slow
def test_full_disk_is_one_line_and_a_rerun_resumes_exactly(tiny_checkpoints, tmp_path):
    args = ("--model", str(tiny_checkpoints["adam"]), "--noise", "0.02:0.2:10", "--seeds", "3", "--limit", "100",
            "--modes", "point")
    full = tmp_path / "full.db"
    assert _sweep(full, *args).returncode == 0
    db = tmp_path / "small.db"
    r = _sweep(db, *args, limit_bytes=150_000)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("Error:") and len(r.stderr.strip().splitlines()) == 1, r.stderr
    partial = len(_rows(db))
    assert 0 < partial < len(_rows(full))
    r = _sweep(db, *args)
    assert r.returncode == 0 and "resumed" in r.stdout
    assert _rows(db) == _rows(full)


@pytest.mark.slow
def test_store_that_cannot_get_its_tables_is_not_left_behind(tiny_checkpoints, tmp_path):
    db = tmp_path / "tiny.db"
    r = _sweep(db, "--model", str(tiny_checkpoints["adam"]), "--noise", "0.1", "--seeds", "1", "--limit", "10",
               limit_bytes=3000)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert not db.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("damage,message", [
    ("ALTER TABLE cells DROP COLUMN example_nll", "table cells lacks column example_nll"),
    ("DROP TABLE slices", "table slices is missing"),
])
def test_damaged_store_refused_and_untouched(tiny_checkpoints, tmp_path, damage, message):
    db = tmp_path / "d.db"
    args = ("--model", str(tiny_checkpoints["adam"]), "--noise", "0.1", "--seeds", "1", "--limit", "10")
    assert CliRunner().invoke(cli, ["sweep", *args, "--store", str(db), "-q"]).exit_code == 0
    c = sqlite3.connect(str(db))
    c.execute(damage)
    c.commit()
    c.close()
    before = _dump(db)
    for cmd in (["sweep", *args, "--noise", "0.2", "--store", str(db)], ["export", "--store", str(db)],
                ["report", "--store", str(db), "--out", str(tmp_path / "report")]):
        r = CliRunner().invoke(cli, cmd)
        assert r.exit_code == 2 and message in r.output, (cmd, r.output)
        assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    assert _dump(db) == before
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(("-wal", "-shm"))) == ["d.db"]


def _dump(db) -> list[str]:
    c = sqlite3.connect(str(db))
    try:
        return list(c.iterdump())
    finally:
        c.close()
