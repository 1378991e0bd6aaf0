"""Checkpoints: one `.pt` file of tensors and plain JSON-able metadata.

Loaded with `torch.load(path, weights_only=True)`: a checkpoint never runs code. Layout
(format version 1):

    {"format": "robust-snn", "version": 1,
     "model_config": {...}, "train_config": {...}, "dataset": {...}, "features": {...},
     "classes": [...], "history": [{...}, ...], "created": "ISO time", "package_version": "...",
     "state_dict": {name: tensor},            # posterior mean for IVON
     "posterior": None | {"hess": {name: tensor}, "ess": float, "weight_decay": float,
                          "ivon_args": {...}, "sigma_summary": {...}, "diagnostics": {...}},
     "members": [{name: tensor}, ...]}        # optional: a deep ensemble's M state dicts
                                              # (member 0 is `state_dict`)

`diagnostics` is `models.posterior.diagnose` at save time (what the posterior is: initial
width, uniform, prior width or learnt), kept so that reports need not recompute it.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import math
import os
import pickle
import pickletools
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from models.model_config import ModelConfig

from basics.errors import CheckpointError, first_line
from basics.files import write_bytes
from models.network import SpikingNet
from models.posterior import Posterior, diagnose

FORMAT = "robust-snn"
VERSION = 1
_REQUIRED = ("model_config", "train_config", "dataset", "features", "classes", "history", "state_dict", "posterior")




@dataclass
class Checkpoint:
    """A loaded checkpoint: a ready network (eval mode) plus its metadata."""

    path: str
    net: SpikingNet
    train_config: dict
    dataset: dict
    features: dict
    classes: list[str]
    history: list[dict]
    posterior: Posterior | None
    meta: dict = field(default_factory=dict)
    members: list[dict[str, torch.Tensor]] | None = None  # ensemble: every member's tensors (member 0 = net)
    content_hash: str = ""  # of what determines the model (`content_hash`), not of when the file was written

    @property
    def optimizer(self) -> str:
        return str(self.train_config.get("optimizer", "adam"))


def save_checkpoint(path: str | os.PathLike, net: SpikingNet, *, train_config: dict, dataset: dict,
                    features: dict, classes: list[str], history: list[dict],
                    posterior: Posterior | None = None, ivon_args: dict | None = None,
                    package_version: str = "", members: list[SpikingNet] | None = None) -> None:
    """Write a checkpoint atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, expected a checkpoint file path")
    obj = {
        "format": FORMAT,
        "version": VERSION,
        "model_config": net.cfg.to_dict(),
        "train_config": dict(train_config),
        "dataset": dict(dataset),
        "features": dict(features),
        "classes": list(classes),
        "history": list(history),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "package_version": package_version,
        "state_dict": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
        "posterior": None if posterior is None else {
            "hess": {k: v.detach().cpu().clone() for k, v in posterior.hess.items()},
            "ess": float(posterior.ess),
            "weight_decay": float(posterior.weight_decay),
            "ivon_args": {k: (v if v != float("inf") else "inf") for k, v in (ivon_args or {}).items()},
            "sigma_summary": posterior.sigma_summary(),
            "diagnostics": diagnose(posterior, dict(net.named_parameters())),
        },
    }
    if members:
        obj["members"] = [{k: v.detach().cpu().clone() for k, v in m.state_dict().items()} for m in members]
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(obj, buf)
    write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> Checkpoint:
    """Load a checkpoint into a ready network; every failure is a one-line `CheckpointError`."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{p}: no such checkpoint file")
    if p.is_dir():
        raise CheckpointError(f"{p}: is a directory, expected a checkpoint file")
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickle protocols before refusing them
            warnings.simplefilter("ignore")
            obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        code = _foreign_globals(p)
        if code:  # the file pickles code or objects a checkpoint never holds
            raise CheckpointError(f"{p}: holds code or objects ({', '.join(code[:3])}) that a checkpoint never "
                                  f"holds, so it was not loaded (robust reads tensors and plain values only)") from None
        raise CheckpointError(f"{p}: not a readable checkpoint: neither torch's zip format nor a pickle") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, AttributeError, TypeError, KeyError,
            IndexError) as e:
        detail = "" if isinstance(e, (KeyError, IndexError)) else f" ({first_line(e)[:120]})"  # those say nothing
        raise CheckpointError(f"{p}: not a readable checkpoint: neither torch's zip format nor a pickle{detail}") \
            from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(f"{p}: not a robust checkpoint (no '{FORMAT}' format marker)")
    if obj.get("version") != VERSION:
        raise CheckpointError(f"{p}: checkpoint format version {obj.get('version')!r} is not supported "
                              f"(this robust reads version {VERSION})")
    missing = [k for k in _REQUIRED if k not in obj]
    if missing:
        raise CheckpointError(f"{p}: checkpoint is missing {', '.join(missing)}")
    for key in ("model_config", "train_config", "dataset", "features", "state_dict"):
        if not isinstance(obj[key], dict):
            raise CheckpointError(f"{p}: '{key}' is not a mapping")
    if not isinstance(obj["classes"], (list, tuple)) or not all(isinstance(c, str) for c in obj["classes"]):
        raise CheckpointError(f"{p}: 'classes' is not a list of class names")
    if not isinstance(obj["history"], (list, tuple)):
        raise CheckpointError(f"{p}: 'history' is not a list")
    try:
        cfg = ModelConfig.from_dict(obj["model_config"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{p}: model_config: {first_line(e)[:200]}") from None
    try:
        net = SpikingNet(cfg)
        net.load_state_dict(obj["state_dict"], strict=True)
    except (TypeError, ValueError, RuntimeError, KeyError) as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(f"{p}: weights do not match the model config ({first[:200]})") from None
    if len(obj["classes"]) != cfg.num_classes:
        raise CheckpointError(f"{p}: {len(obj['classes'])} class names for a network with {cfg.num_classes} outputs")
    _check_finite(p, "weight", obj["state_dict"])
    _check_bn(p, "", obj["state_dict"])
    posterior = None
    if obj["posterior"] is not None:
        posterior = _posterior(p, obj["posterior"], dict(net.named_parameters()), device)
    members = _load_members(p, cfg, obj.get("members"), device)
    net.to(device).eval()
    meta = {k: obj[k] for k in ("created", "package_version") if k in obj}
    if obj["posterior"] is not None:
        meta["ivon_args"] = obj["posterior"].get("ivon_args", {})
        meta["sigma_summary"] = obj["posterior"].get("sigma_summary", {})
        meta["diagnostics"] = obj["posterior"].get("diagnostics")
    return Checkpoint(str(p), net, obj["train_config"], obj["dataset"], obj["features"],
                      list(obj["classes"]), list(obj["history"]), posterior, meta, members, content_hash(obj))


# Entries that say where or when a file was written, not what model it holds.
NOT_CONTENT = ("created", "package_version")
NOT_CONTENT_IN = {"dataset": ("data_dir",), "train_config": ("source",)}


def content_hash(obj: dict) -> str:
    """A hash of what determines a checkpoint's model: every entry and tensor but the time it
    was written, the package version and where its data or source lived. The same training
    run (same seed, data and settings) gives the same hash, so a sweep resumes across a
    retrained file, and a changed weight gives another."""
    h = hashlib.sha256()

    def feed(x: object) -> None:
        if torch.is_tensor(x):
            t = x.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(x, dict):
            h.update(b"{")
            for k in sorted(x, key=str):
                feed(str(k))
                feed(x[k])
            h.update(b"}")
        elif isinstance(x, (list, tuple)):
            h.update(b"[")
            for v in x:
                feed(v)
            h.update(b"]")
        else:
            h.update(f"{type(x).__name__}:{x!r}".encode())

    kept = {k: v for k, v in obj.items() if k not in NOT_CONTENT}
    for key, drop in NOT_CONTENT_IN.items():
        if isinstance(kept.get(key), dict):
            kept[key] = {k: v for k, v in kept[key].items() if k not in drop}
    feed(kept)
    return h.hexdigest()[:16]


def _foreign_globals(p: Path) -> list[str]:
    """What a refused file would import when unpickled, read without running it
    (pickletools only decodes opcodes): names outside torch's tensor machinery."""
    try:
        if zipfile.is_zipfile(p):
            with zipfile.ZipFile(p) as z:
                data = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
        else:
            data = p.read_bytes()
        names, strings = [], []
        for op, arg, _ in pickletools.genops(data):
            if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
                strings.append(str(arg))
            elif op.name == "GLOBAL":
                names.append(str(arg).replace(" ", "."))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                names.append(f"{strings[-2]}.{strings[-1]}")
    except Exception:  # not a pickle at all: nothing it would import
        return []
    return [n for n in dict.fromkeys(names) if not n.startswith(("torch.", "collections.OrderedDict"))]


def _check_finite(p: Path, what: str, tensors: dict) -> None:
    """A NaN or inf weight would give invented accuracies (the argmax of NaN logits)."""
    for n, v in tensors.items():
        if torch.is_tensor(v) and v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise CheckpointError(f"{p}: {what} {n} holds NaN or inf values")


def _check_bn(p: Path, what: str, tensors: dict) -> None:
    """BatchNorm running variances are variances: a negative one makes rsqrt NaN downstream."""
    for n, v in tensors.items():
        if n.endswith("running_var") and torch.is_tensor(v) and bool((v < 0).any()):
            raise CheckpointError(f"{p}: {what}{n} holds negative variances")


def _posterior(p: Path, post, params: dict[str, torch.Tensor], device) -> Posterior:
    """The IVON posterior, checked: a mapping with finite ess/weight decay and a finite,
    non-negative Hessian of each parameter's shape (sigma = 1/sqrt(ess (hess + wd)))."""
    if not isinstance(post, dict):
        raise CheckpointError(f"{p}: 'posterior' is not a mapping")
    hess = post.get("hess")
    if not isinstance(hess, dict):
        raise CheckpointError(f"{p}: posterior has no 'hess' mapping")
    bad = [n for n in params if not torch.is_tensor(hess.get(n)) or hess[n].shape != params[n].shape]
    if bad:
        raise CheckpointError(f"{p}: posterior hess missing or mis-shaped for {', '.join(bad[:3])}")
    _check_finite(p, "posterior hess", {n: hess[n] for n in params})
    negative = [n for n in params if bool((hess[n] < 0).any())]
    if negative:
        raise CheckpointError(f"{p}: posterior hess of {negative[0]} is negative (no valid posterior width)")
    nums = {}
    for key in ("ess", "weight_decay"):
        v = post.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise CheckpointError(f"{p}: posterior '{key}' is missing or not a finite non-negative number")
        nums[key] = float(v)
    if nums["ess"] < 1:  # sigma = 1/sqrt(ess (hess + wd)): below one example the widths overflow
        raise CheckpointError(f"{p}: posterior 'ess' {nums['ess']:g} is below 1 (an effective sample size of less "
                              f"than one example: no valid posterior width)")
    args = post.get("ivon_args", {})
    if not isinstance(args, dict):
        raise CheckpointError(f"{p}: posterior 'ivon_args' is not a mapping")
    hess_init = args.get("hess_init")
    if hess_init is not None and (isinstance(hess_init, bool) or not isinstance(hess_init, (int, float))):
        raise CheckpointError(f"{p}: posterior hess_init {hess_init!r} is not a number")
    for key in ("sigma_summary", "diagnostics"):
        if post.get(key) is not None and not isinstance(post[key], dict):
            raise CheckpointError(f"{p}: posterior '{key}' is not a mapping")
    return Posterior({n: hess[n].to(device) for n in params}, nums["ess"], nums["weight_decay"],
                     None if hess_init is None else float(hess_init))


def _load_members(p: Path, cfg: ModelConfig, members, device) -> list[dict[str, torch.Tensor]] | None:
    """Every ensemble member's tensors, each checked against the model config."""
    if members is None:
        return None
    if not isinstance(members, list) or not members:
        raise CheckpointError(f"{p}: 'members' is not a non-empty list of state dicts")
    out = []
    for i, sd in enumerate(members):
        m = SpikingNet(cfg)
        try:
            m.load_state_dict(sd, strict=True)
        except (TypeError, ValueError, RuntimeError, KeyError, AttributeError) as e:
            first = str(e).strip().splitlines()[0]
            raise CheckpointError(f"{p}: ensemble member {i} does not match the model config ({first[:160]})") from None
        _check_finite(p, f"ensemble member {i} weight", sd)
        _check_bn(p, f"ensemble member {i} ", sd)
        out.append({n: v.to(device) for n, v in m.tensors().items()})
    return out
