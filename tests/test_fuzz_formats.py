"""Seeded mutation fuzz of the protobuf strategy, the JSON strategy and the safetensors index JSON on real
sets (MindSpore wrote the rank files): every mutated file opens into readable values or is a CheckpointError,
in a child process capped at 2 GB with 3 s per case (format_fuzz.py; more cases: benchmarks/fuzz_formats.py).
"""

from __future__ import annotations

import pytest

from tests.format_fuzz import KINDS, build_bases, run_cases

CASES = 120  # per format


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    return build_bases(tmp_path_factory.mktemp("fuzz-bases"))


@pytest.mark.parametrize("kind", KINDS)
def test_mutated_files_open_or_are_a_checkpoint_error(bases, kind):
    base, target, opened = bases[kind]
    outcomes = run_cases(kind, base, target, opened, list(range(CASES)))
    bad = {seed: o for seed, o in outcomes.items() if o not in ("ok", "CheckpointError")}
    shown = "\n".join(f"{seed}: {outcome}" for seed, outcome in list(bad.items())[:5])
    assert not bad, f"{len(bad)} of {CASES} {kind} cases:\n{shown}"
    assert len(outcomes) == CASES
    refused = sum(o == "CheckpointError" for o in outcomes.values())
    assert 0 < refused < CASES  # the mutations reach both outcomes: the fuzz is not vacuous
