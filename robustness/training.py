"""Orchestration behind `robust train`, `robust eval` and `robust demo`."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from models.checkpoint import load_checkpoint, save_checkpoint
from models.network import ModelConfig, SpikingNet
from models.train import PRESETS, train
from robustness import __version__
from robustness.data import DatasetSpec, load_dataset
from robustness.errors import BadInput
from robustness.evaluate import EvalConfig, evaluate, modes_for

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainRequest:
    """What `robust train` was asked for; None means the optimizer preset's value."""

    optimizer: str = "adam"
    dataset: str = "tts-digits"
    data_dir: str | None = None
    epochs: int | None = None
    seed: int = 0
    lr: float | None = None
    batch_size: int | None = None
    weight_decay: float | None = None
    hess_init: float | None = None
    hidden: tuple[int, ...] = (256, 256)
    frames: int | None = None
    limit_train: int | None = None
    skip_bad: bool = False


def train_to_checkpoint(req: TrainRequest, out: str | Path, device: torch.device | str = "cpu",
                        progress: bool = True) -> str:
    """Train per `req`, write the checkpoint to `out`, return a one-paragraph summary."""
    if req.optimizer not in PRESETS:
        raise BadInput(f"unknown optimizer {req.optimizer!r} (use adam or ivon)")
    overrides = {k: v for k, v in dict(epochs=req.epochs, lr=req.lr, batch_size=req.batch_size,
                                       weight_decay=req.weight_decay, hess_init=req.hess_init).items()
                 if v is not None}
    for k in ("epochs", "batch_size"):
        if k in overrides and overrides[k] < 1:
            raise BadInput(f"--{k.replace('_', '-')} must be positive, got {overrides[k]}")
    if req.lr is not None and req.lr <= 0:
        raise BadInput(f"--lr must be positive, got {req.lr}")
    if any(h < 1 for h in req.hidden):
        raise BadInput(f"--hidden widths must be positive, got {list(req.hidden)}")
    tcfg = dataclasses.replace(PRESETS[req.optimizer], seed=req.seed, **overrides)
    # An absolute data path, so `robust eval` finds the data from any working directory.
    data_dir = str(Path(req.data_dir).expanduser().resolve()) if req.data_dir else None
    spec = DatasetSpec(req.dataset, data_dir, req.frames, req.skip_bad)
    data = load_dataset(spec, progress=progress)
    tr, va = data.split("train").head(req.limit_train), data.split("validation")
    mcfg = ModelConfig(input_dim=tr.x.shape[-1], num_classes=len(data.classes), hidden=req.hidden)
    net = SpikingNet(mcfg, torch.Generator().manual_seed(req.seed)).to(device)
    if data.skipped:
        log.warning("skipped %d unusable file(s)", len(data.skipped))
    log.info("training %s on %s: %d train / %d validation examples, %s", req.optimizer, req.dataset,
             len(tr), len(va), tcfg)
    res = train(net, tcfg, tr.x, tr.y, va.x, va.y, progress=progress)
    save_checkpoint(out, res.net, train_config={**tcfg.to_dict(), "n_train": len(tr)},
                    dataset={**spec.to_dict(), "fingerprint": data.fingerprint}, features=data.features.to_dict(),
                    classes=data.classes, history=res.history, posterior=res.posterior,
                    ivon_args=res.ivon_args, package_version=__version__)
    last = res.history[-1]
    s = (f"wrote {out}: {req.optimizer}, {tcfg.epochs} epochs, validation accuracy {last['val_acc']:.4f}, "
         f"loss {last['val_loss']:.4f}")
    if res.posterior is not None:
        sig = res.posterior.sigma_summary()
        s += f"; posterior sigma median {sig['sigma_median']:.3g}, max {sig['sigma_max']:.3g}"
    return s


def evaluate_checkpoints(paths: list[str], ecfg: EvalConfig, data_dir: str | None = None,
                         device: torch.device | str = "cpu") -> list[dict]:
    """One row per (checkpoint, mode) with every metric."""
    rows = []
    cache: dict = {}
    for path in paths:
        ck = load_checkpoint(path, device)
        spec = DatasetSpec.from_dict(ck.dataset)
        if data_dir is not None:
            spec = dataclasses.replace(spec, data_dir=data_dir)
        if spec not in cache:
            cache[spec] = load_dataset(spec)
        for mode in modes_for(ck):
            r = evaluate(ck, cache[spec], mode, ecfg, device)
            rows.append({"model": path, "optimizer": ck.optimizer, "split": ecfg.split, **r.row()})
    return rows


_COLUMNS = [("model", "{}"), ("mode", "{}"), ("n", "{}"), ("accuracy", "{:.4f}"), ("nll", "{:.4f}"),
            ("ece", "{:.4f}"), ("brier", "{:.4f}"), ("entropy", "{:.4f}"), ("expected_entropy", "{:.4f}"),
            ("mutual_information", "{:.4f}")]


def format_table(rows: list[dict]) -> str:
    """A fixed-width text table of evaluation rows ('-' where a metric does not apply)."""
    cells = [[h for h, _ in _COLUMNS]]
    for r in rows:
        cells.append([fmt.format(r[h]) if r.get(h) is not None else "-" for h, fmt in _COLUMNS])
    widths = [max(len(row[i]) for row in cells) for i in range(len(_COLUMNS))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells)


def run_demo(out_dir: Path, epochs: int = 30, seed: int = 0, device: torch.device | str = "cpu",
             progress: bool = True) -> str:
    """Train Adam and IVON on the built-in corpus, evaluate both, return the table."""
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    paths = []
    for opt in ("adam", "ivon"):
        path = out_dir / f"{opt}.pt"
        lines.append(train_to_checkpoint(TrainRequest(optimizer=opt, epochs=epochs, seed=seed), path, device, progress))
        paths.append(str(path))
    rows = evaluate_checkpoints(paths, EvalConfig(), device=device)
    return "\n".join(lines + ["", format_table(rows)])
