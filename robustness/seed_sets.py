"""Training seeds as replicates: one training method, trained once per seed.

`robust train --seeds 0:4 --out adam.pt` writes `adam-seed0.pt` ... `adam-seed4.pt`, each
exactly what `robust train --seed S --out adam-seedS.pt` writes, and the manifest
`adam.seeds.json` that names them. A rerun trains only the seeds whose checkpoint is
missing. `--model adam.seeds.json`, or a glob such as `'adam-seed*.pt'`, hands the whole set
to eval, sweep and slice; reports group a store's models into sets by their training
configuration (everything but the seed), however they were named.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from basics.errors import BadInput
from basics.files import write_bytes
from robustness.executors import Unit, make_executor

if TYPE_CHECKING:
    import torch

FORMAT, VERSION = "robust-seed-set", 1
MAX_SEEDS = 1000


def member_path(out: str | Path, seed: int) -> Path:
    out = Path(out)
    return out.with_name(f"{out.stem}-seed{seed}{out.suffix or '.pt'}")


def manifest_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(f"{out.stem}.seeds.json")


def _mismatch(tc: dict, want: dict) -> str | None:
    """The first training setting in which a checkpoint differs from what is asked for."""
    for k, v in want.items():
        have = tc.get(k)
        if isinstance(have, list):
            have = tuple(have)
        if have != v:
            return f"{k} = {tc.get(k)!r}, not {v!r}"
    return None


def _wanted(req, seed: int) -> dict:
    """The training settings a member for `seed` must carry (those a checkpoint stores)."""
    from robustness.training import train_config_of

    d = train_config_of(dataclasses.replace(req, seed=seed)).to_dict()
    d.update(ensemble=req.ensemble, train_perturbation=req.train_perturbation)
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


def _train_one(req, path: str, device: str, progress: bool) -> str:
    from robustness.training import train_to_checkpoint

    return train_to_checkpoint(req, path, device=device, progress=progress)


def train_seed_set(req, seeds: Iterable[int], out: str | Path, device: torch.device | str = "cpu",
                   progress: bool = True, executor: str = "local", address: str | None = None) -> str:
    """Train `req` once per seed into `member_path(out, seed)` (skipping members already
    trained exactly so), then write the manifest. Returns a summary line per member."""
    from models.checkpoint import load_checkpoint

    seeds = list(dict.fromkeys(int(s) for s in seeds))
    if not seeds:
        raise BadInput("--seeds names no seed")
    if len(seeds) > MAX_SEEDS:
        raise BadInput(f"--seeds names {len(seeds)} seeds; at most {MAX_SEEDS}")
    ordered = sorted(seeds)
    close = [(a, b) for a, b in zip(ordered, ordered[1:]) if b - a < req.ensemble]
    if close:  # ensemble seed s trains members s..s+M-1: replicates must not share a member
        m = req.ensemble
        raise BadInput(f"--seeds {close[0][0]} and {close[0][1]} would share ensemble members (an ensemble of {m} "
                       f"at seed s trains seeds s..s+{m - 1}): space the seeds {m} apart, e.g. "
                       f"{','.join(str(i * m) for i in range(min(len(seeds), 5)))}")
    lines, todo = [], []
    for s in seeds:
        p = member_path(out, s)
        if p.exists():
            ck = load_checkpoint(p)
            why = _mismatch(ck.train_config, _wanted(req, s))
            if why or tuple(ck.net.cfg.hidden) != tuple(req.hidden) or ck.dataset.get("name") != req.dataset:
                raise BadInput(f"{p}: already holds a model trained otherwise ({why or 'another network or dataset'}); "
                               f"move it or choose another --out")
            lines.append(f"kept {p} (seed {s}, already trained)")
        else:
            todo.append(s)
    ex = make_executor(executor, address, str(device))
    try:
        units = [Unit(f"train seed {s}", _train_one,
                      (dataclasses.replace(req, seed=s), str(member_path(out, s)), str(device), progress))
                 for s in todo]
        for unit, res in ex.map(units):
            if not isinstance(res, str):
                raise BadInput(f"{unit.name}: failed: {getattr(res, 'error', res)}")
            lines.append(res.split("\n")[0])
    finally:
        ex.close()
    manifest = manifest_path(out)
    body = {"format": FORMAT, "version": VERSION, "seeds": seeds,
            "members": [{"seed": s, "path": member_path(out, s).name} for s in seeds]}
    write_bytes(manifest, (json.dumps(body, indent=1) + "\n").encode())
    lines.append(f"wrote {manifest}: {len(seeds)} seeds ({', '.join(map(str, seeds))})")
    return "\n".join(lines)


def _natural(p: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p)]


def read_manifest(path: str | Path) -> list[str]:
    """The member checkpoints a seed-set manifest names (paths relative to the manifest)."""
    p = Path(path)
    try:
        d = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadInput(f"{p}: not a readable seed-set manifest ({e})") from None
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise BadInput(f"{p}: not a seed-set manifest (no '{FORMAT}' format marker)")
    members = d.get("members")
    if not isinstance(members, list) or not members or not all(isinstance(m, dict) and isinstance(m.get("path"), str)
                                                                for m in members):
        raise BadInput(f"{p}: its members must be a non-empty list of {{seed, path}}")
    return [str(p.parent / m["path"]) for m in members]


def expand_models(models: Iterable[str]) -> tuple[str, ...]:
    """--model values with seed sets opened: a `.seeds.json` manifest becomes its members, a
    glob (`*`, `?`, `[`) the files it matches in natural order (seed10 after seed9)."""
    out: list[str] = []
    for m in models:
        m = str(m)
        if m.endswith(".seeds.json") or (m.endswith(".json") and Path(m).is_file()):
            out += read_manifest(m)
        elif any(c in m for c in "*?[") and not Path(m).exists():
            hits = sorted(glob.glob(m), key=_natural)
            if not hits:
                raise BadInput(f"--model {m!r}: the pattern matches no file")
            out += hits
        else:
            out.append(m)
    return tuple(dict.fromkeys(out))
