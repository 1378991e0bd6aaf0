"""The bottom layer: what every other package may import and that imports none of them.

Errors and their one-line form, atomic files, progress bars, TOML reading, and the
statistics that both the sweep (its chip intervals, `--seeds auto`) and the reports use.
Needs only numpy, scipy and tqdm: never torch, never `robustness`, `models`,
`perturbations` or `reports`.
"""
