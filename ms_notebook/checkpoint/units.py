"""The one way sizes and counts are written, in every view (CLI, notebook widgets, Checkpoint Viewer).

- Bytes in binary units, labelled as such: ``288 B``, ``4.5 KiB``, ``64.0 KiB``, ``1.2 MiB`` (one decimal
  from KiB up; a value that would round to 1024.0 moves to the next unit).
- Counts (parameters, values): exact below 1,000 (``650``), else three significant digits with K, M, B, T
  (``1.22K``, ``16.4K``, ``7.24B``), so a column never mixes ``1216`` with ``16.4K``.
- Exact integers with thousands separators: ``18,418``.

``labextension/src/units.ts`` mirrors these functions operation for operation (IEEE doubles and
``floor(x + 0.5)`` rounding in both), and ``tests/test_units.py`` runs both on the same numbers.
"""

from __future__ import annotations

import math

BYTE_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB")
COUNT_UNITS = ((1e3, "K"), (1e6, "M"), (1e9, "B"), (1e12, "T"))


def _fixed(scaled: int, decimals: int) -> str:
    """An integer holding ``decimals`` decimal digits, written with a point: (45, 1) -> '4.5'."""
    if decimals == 0:
        return str(scaled)
    digits = str(scaled).rjust(decimals + 1, "0")
    return f"{digits[:-decimals]}.{digits[-decimals:]}"


def format_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'; below 1024: '288 B'."""
    n = float(n)
    if abs(n) < 1024:
        return f"{int(n)} B"
    value = n
    for i, unit in enumerate(BYTE_UNITS):
        value = value / 1024
        tenths = math.floor(abs(value) * 10 + 0.5)
        if tenths < 10240 or i == len(BYTE_UNITS) - 1:
            return ("-" if n < 0 else "") + f"{_fixed(tenths, 1)} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def format_count(n: float) -> str:
    """650 -> '650', 1216 -> '1.22K', 16448 -> '16.4K', 7_241_732_096 -> '7.24B'."""
    n = int(n)
    if abs(n) < 1000:
        return str(n)
    sign = "-" if n < 0 else ""
    a = abs(n)
    for i, (div, suffix) in enumerate(COUNT_UNITS):
        value = a / div
        for decimals in (2, 1, 0):
            if value < 10 ** (3 - decimals) or decimals == 0:
                scaled = math.floor(value * 10**decimals + 0.5)
                if scaled < 1000 or (decimals == 0 and i == len(COUNT_UNITS) - 1):
                    return f"{sign}{_fixed(scaled, decimals)}{suffix}"
    raise AssertionError("unreachable")  # pragma: no cover


def format_int(n: int) -> str:
    """18418 -> '18,418'."""
    return f"{int(n):,}"
