"""The exact DC solution of a crossbar array's resistor network: the oracle of the first-order
IR-drop model (models/crossbar_read.py).

Nodal analysis on every row-wire and column-wire node of an array: a row driver at column 0
feeds its row through r, neighbouring nodes on rows and columns are joined by r, each column
ends in its sense amplifier at virtual ground through r below the last row, and a cell joins
its row and column nodes with its conductance when its row is selected (a row at 0 V is
unselected: 1T1R, its cells open). One sparse solve (2 rows x columns unknowns) per input
vector: fine for a full 256 x 256 array, far too slow for inference.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla


def exact_columns(g: np.ndarray, x: np.ndarray, r: float) -> np.ndarray:
    """Column currents of the array (rows x columns) solved exactly: drivers at column 0, amplifiers
    below the last row, r between neighbouring nodes; rows at 0 unselected (their cells open)."""
    n, m = g.shape
    idx = np.arange(n * m).reshape(n, m)
    row, col = idx, idx + n * m
    ii, jj, vv, b = [], [], [], np.zeros(2 * n * m)

    def link(u: np.ndarray, v: np.ndarray, c: np.ndarray) -> None:
        ii.extend([u, v, u, v])
        jj.extend([u, v, v, u])
        vv.extend([c, c, -c, -c])

    gw = np.full(1, 1 / r)
    link(row[:, :-1].ravel(), row[:, 1:].ravel(), np.repeat(gw, n * (m - 1)))
    link(col[:-1].ravel(), col[1:].ravel(), np.repeat(gw, (n - 1) * m))
    on = np.repeat(x != 0, m)
    link(row.ravel()[on], col.ravel()[on], g.ravel()[on])
    ii.append(row[:, 0])
    jj.append(row[:, 0])
    vv.append(np.repeat(gw, n))
    b[row[:, 0]] = x / r
    ii.append(col[-1])
    jj.append(col[-1])
    vv.append(np.repeat(gw, m))
    a = sp.csr_matrix((np.concatenate(vv), (np.concatenate(ii), np.concatenate(jj))), shape=(2 * n * m,) * 2)
    v = spla.spsolve(a.tocsc(), b)
    return v[col[-1]] / r
