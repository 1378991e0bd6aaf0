"""The Ray executor: same rows as the local one, resumable after the driver is killed,
failing tasks retried then recorded. Needs the `ray` extra (CI installs it)."""

import sqlite3
import sys

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from robustness.executors import Failed, RayExecutor, Unit  # noqa: E402
from robustness.slicing.run import SliceConfig, run_slice  # noqa: E402
from robustness.store.database import Store  # noqa: E402
from robustness.sweep.config import PerturbationPlan, SweepConfig  # noqa: E402
from robustness.sweep.run import run_sweep  # noqa: E402
from tests.interrupt import count_rows, kill_at, run_to_end  # noqa: E402

COLUMNS = ("model_hash", "mode", "perturbation", "layer", "level", "seed", "samples", "n", "accuracy", "nll", "brier",
           "ece", "entropy", "mutual_information", "disagreement", "spike_rates", "example_correct", "example_nll",
           "example_confidence")


@pytest.fixture(scope="module")
def cluster():
    """A local Ray instance with 2 CPUs; its address lets subprocess drivers join it."""
    ctx = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                   runtime_env={"env_vars": {"PYTHONWARNINGS": "ignore"}})
    yield ctx.address_info["gcs_address"]
    ray.shutdown()


def cells(db) -> list[tuple]:
    with sqlite3.connect(str(db)) as c:
        return c.execute(f"SELECT {', '.join(COLUMNS)} FROM cells ORDER BY model_hash, mode, perturbation, layer, "
                         "level, seed").fetchall()


def sweep_cfg(model, **kw) -> SweepConfig:
    return SweepConfig(models=(str(model),), plans=(PerturbationPlan("gaussian", (0.05, 0.1, 0.2)),), seeds=3,
                       mc_samples=3, limit=80, **kw)


@pytest.mark.slow
def test_sweep_on_ray_stores_the_same_rows_as_local(tiny_checkpoints, cluster, tmp_path):
    cfg = sweep_cfg(tiny_checkpoints["ivon"])
    local = run_sweep(cfg, str(tmp_path / "local.db"), progress=False)
    ex = RayExecutor()
    remote = run_sweep(cfg, str(tmp_path / "ray.db"), progress=False, executor=ex)
    ex.close()
    assert ray.is_initialized(), "an executor must not shut down a Ray instance it did not start"
    assert local.new_cells == remote.new_cells == 3 * (1 + 3 * 3)  # mean, chips, bma: clean + 3 levels x 3 seeds
    assert cells(tmp_path / "local.db") == cells(tmp_path / "ray.db")
    with Store.open(tmp_path / "ray.db") as s:
        assert s.runs()[0]["finished"] is not None and s.failures("sweep", 1) == []


@pytest.mark.slow
def test_slice_on_ray_stores_the_same_curves_as_local(tiny_checkpoints, cluster, tmp_path):
    # 2D with 9 x 9 points: bma chunks (64 // 3 = 21 points per pass) spread over several tasks
    cfg = SliceConfig(models=(str(tiny_checkpoints["ivon"]),), dims=2, points=9, directions=1, batches=1,
                      batch_size=32, mc_samples=3, modes=("mean", "bma"))
    local = run_slice(cfg, str(tmp_path / "local.db"), progress=False)
    ex = RayExecutor()
    remote = run_slice(cfg, str(tmp_path / "ray.db"), progress=False, executor=ex)
    ex.close()
    assert local.new_curves == remote.new_curves == 2
    for a, b in zip(local.curves, remote.curves):
        assert (a["mode"], a["direction"]) == (b["mode"], b["direction"])
        assert np.array_equal(a["loss"], b["loss"]) and np.array_equal(a["accuracy"], b["accuracy"])


@pytest.mark.slow
def test_killed_ray_driver_resumes_without_duplicates(tiny_checkpoints, cluster, tmp_path):
    args = ["sweep", "--model", str(tiny_checkpoints["adam"]), "--noise", "0.02:0.2:6", "--seeds", "2", "--limit",
            "60", "--quiet", "--executor", "ray", "--address", cluster]
    full, killed = tmp_path / "full.db", tmp_path / "killed.db"
    assert run_to_end(args, full).returncode == 0
    found = kill_at(args, killed, count_rows("cells"), [5])
    assert 0 < found[0] and found[-1] < 26, f"kills should land mid-sweep: {found}"
    r = run_to_end(args, killed)
    assert r.returncode == 0 and "resumed" in r.stdout, r.stderr
    a, b = cells(full), cells(killed)
    assert len(a) == len(b) == 2 * (1 + 6 * 2)
    assert len({row[:6] for row in b}) == len(b)
    assert a == b


def _always_fails(attempts_file: str, *_args):
    with open(attempts_file, "a") as f:
        f.write("x")
    raise RuntimeError("simulated worker fault")


ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/


class _OneUnitFails(RayExecutor):
    """A Ray executor on which the second unit of every map raises."""

    def __init__(self, attempts_file: str):
        super().__init__(retries=2)
        self.attempts_file = attempts_file

    def map(self, units):
        units = list(units)
        units[1] = Unit(units[1].name, _always_fails, (self.attempts_file,))
        return super().map(units)


@pytest.mark.slow
def test_failing_task_is_retried_then_recorded(tiny_checkpoints, cluster, tmp_path):
    attempts = tmp_path / "attempts"
    attempts.touch()
    ex = _OneUnitFails(str(attempts))
    db = tmp_path / "r.db"
    res = run_sweep(sweep_cfg(tiny_checkpoints["adam"], modes=("point",)), str(db), progress=False, executor=ex)
    ex.close()
    assert attempts.read_text() == "xxx"  # first try + 2 retries
    assert [f["attempts"] for f in res.failed] == [3] and "simulated worker fault" in res.failed[0]["error"]
    with Store.open(db) as s:
        (fail,) = s.failures("sweep", res.run_id)
        assert fail["unit"].endswith("gaussian 0.1") and "simulated worker fault" in fail["error"]
        assert s.runs()[0]["finished"] is None, "a run with a failed unit is not finished"
        assert {c.level for c in s.cells()} == {0.0, 0.05, 0.2}  # the other units were stored
    # a rerun retries the failed unit (here on the local executor) and finishes the run
    again = run_sweep(sweep_cfg(tiny_checkpoints["adam"], modes=("point",)), str(db), progress=False)
    assert again.resumed and again.new_cells == 3 and not again.failed
    with Store.open(db) as s:
        assert s.failures("sweep", res.run_id) == [] and s.runs()[0]["finished"] is not None


def test_executor_yields_failed_for_a_raising_task(cluster):
    ex = RayExecutor(retries=0)
    out = dict((u.name, r) for u, r in ex.map([Unit("ok", int, ("7",)), Unit("bad", int, ("x",))]))
    ex.close()
    assert out["ok"] == 7
    assert isinstance(out["bad"], Failed) and out["bad"].attempts == 1 and "ValueError" in out["bad"].error
