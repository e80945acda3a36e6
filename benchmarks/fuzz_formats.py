"""Mutation fuzz of the set formats at scale (tests/test_fuzz_formats.py runs a few hundred cases): the
protobuf strategy, the JSON strategy and the safetensors index JSON, each case in a child capped at 2 GB
and 3 s. Prints the outcome counts per format and every case that was neither a readable checkpoint nor a
CheckpointError, with its seed (replay: ``tests.format_fuzz.mutate(kind, seed, original)``).

Usage: ``GLOG_v=3 python benchmarks/fuzz_formats.py [cases per format, default 2500] [first seed]``
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.format_fuzz import KINDS, build_bases, run_cases

BATCH = 500


def main() -> int:
    cases = int(sys.argv[1]) if len(sys.argv) > 1 else 2500
    first = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    bases = build_bases(Path(tempfile.mkdtemp(prefix="fuzz-formats-")))
    failures = 0
    for kind in KINDS:
        base, target, opened = bases[kind]
        start = time.perf_counter()
        counts: Counter[str] = Counter()
        for lo in range(first, first + cases, BATCH):
            seeds = list(range(lo, min(lo + BATCH, first + cases)))
            for seed, outcome in run_cases(kind, base, target, opened, seeds).items():
                key = outcome if outcome in ("ok", "CheckpointError") else "unexpected"
                counts[key] += 1
                if key == "unexpected":
                    failures += 1
                    print(f"  {kind} seed {seed}: {outcome[:400]}")
        took = time.perf_counter() - start
        shown = ", ".join(f"{k} {v}" for k, v in counts.items())
        print(f"{kind:14s} {cases} cases in {took:5.1f} s: {shown}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
