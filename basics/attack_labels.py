"""What a worst-case (`adversarial`) spec says about its search, read without torch.

The sweep adds each search's random baseline by it; the report pairs a search with that
baseline by it. Both must agree, so it lives below both.
"""

from __future__ import annotations

from typing import Mapping


SEARCH_OPTIONS = ("steps", "examples")  # how hard a worst-case search looks, not what it attacks


def searches(options: Mapping[str, str]) -> bool:
    """An `adversarial` component with these options ascends (steps above 0, 10 by default);
    with steps=0 it is the random baseline of its budget."""
    try:
        return float(options.get("steps", 10)) > 0
    except ValueError:
        return True  # not a number: the perturbation's own check refuses it before any run


def attack_label(label: str) -> tuple[str, bool, str] | None:
    """(what is attacked: target and the options but `steps`, is the random baseline, the key
    that pairs it with its baseline: without any search option) of an `adversarial(...)`
    label, read from its text (without parsing it through perturbations/)."""
    if not label.startswith("adversarial") or "+" in label:
        return None
    inner = label[len("adversarial"):].split(":")[0].strip("()")
    opts = {k.strip(): v.strip() for k, v in (kv.split("=", 1) for kv in inner.split(",") if "=" in kv)}
    target = opts.get("target", "weights")

    def named(skip: tuple[str, ...]) -> str:
        rest = ", ".join(f"{k}={v}" for k, v in sorted(opts.items()) if k not in ("target", *skip))
        return target + (f" ({rest})" if rest else "")

    return named(("steps",)), not searches(opts), named(SEARCH_OPTIONS)
