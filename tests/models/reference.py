"""Deliberately simple references the engine is checked against.

Written for obviousness, not speed: every rule is re-derived from the list of
evaluated points by looking back over the history, exactly as the definitions
in models/rules.py read.
"""

from __future__ import annotations

import itertools
import math


def _sign(v: float) -> int:
    return (v > 0) - (v < 0)


def reference_rules(values, center, sigma, rules) -> list[set[str]]:
    n = len(values)
    cs = center if isinstance(center, list | tuple) else [center] * n
    ss = sigma if isinstance(sigma, list | tuple) else [sigma] * n
    pts: list[tuple[float, float]] = []  # (deviation, sigma) of evaluated points
    out: list[set[str]] = []
    cu_hi = cu_lo = 0.0  # tabular CUSUM sums in the deviation's units (k = 0.5, h = 4 sigmas)
    for x, c, s in zip(values, cs, ss, strict=True):
        if not math.isfinite(x):
            out.append(set())
            continue
        pts.append((x - c, s))
        fired: set[str] = set()
        d, s = pts[-1]

        def last(k: int) -> list[tuple[float, float]]:
            return pts[-k:]

        if abs(d) > 3 * s:
            fired.add("WE1")
        for side in (1, -1):
            if side * d > 2 * s and sum(1 for dd, sd in last(3) if side * dd > 2 * sd) >= 2:
                fired.add("WE2")
            if side * d > s and sum(1 for dd, sd in last(5) if side * dd > sd) >= 4:
                fired.add("WE3")
        for k, rid in ((8, "WE4"), (9, "N2")):
            w = last(k)
            if len(w) == k and (all(dd > 0 for dd, _ in w) or all(dd < 0 for dd, _ in w)):
                fired.add(rid)
        w = [dd for dd, _ in last(6)]
        if len(w) == 6:
            diffs = [b - a for a, b in itertools.pairwise(w)]
            if all(df > 0 for df in diffs) or all(df < 0 for df in diffs):
                fired.add("N3")
        w = [dd for dd, _ in last(14)]
        if len(w) == 14:
            sg = [_sign(b - a) for a, b in itertools.pairwise(w)]
            if all(g != 0 for g in sg) and all(sg[i] == -sg[i + 1] for i in range(len(sg) - 1)):
                fired.add("N4")
        w = last(15)
        if len(w) == 15 and all(abs(dd) <= sd for dd, sd in w):
            fired.add("N7")
        w = last(8)
        if (len(w) == 8 and all(abs(dd) > sd for dd, sd in w)
                and any(dd > sd for dd, sd in w) and any(dd < -sd for dd, sd in w)):
            fired.add("N8")
        if "CUSUM" in rules:
            cu_hi = max(0.0, cu_hi + d - 0.5 * s)
            cu_lo = max(0.0, cu_lo - d - 0.5 * s)
            if (cu_hi > 4.0 * s and d > 0) or (cu_lo > 4.0 * s and d < 0):
                fired.add("CUSUM")
        out.append(fired & set(rules))
    return out
