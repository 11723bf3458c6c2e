"""JSON has no NaN or infinity: reports replace them before writing, so the files stay strict JSON."""

from __future__ import annotations

import math


def json_safe(value, infinity: object = None):
    """``value`` with every NaN as None (null) and every infinity as ``infinity`` (signed with a
    leading "-" when it is a string and the value is negative), through dicts, lists and tuples."""
    if isinstance(value, float) and not math.isfinite(value):
        if math.isnan(value) or infinity is None:
            return None
        return infinity if value > 0 or not isinstance(infinity, str) else f"-{infinity}"
    if isinstance(value, dict):
        return {k: json_safe(v, infinity) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v, infinity) for v in value]
    return value
