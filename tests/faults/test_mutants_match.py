"""Each mutant of `make mutants` still names code that exists: a refactor that moves the text would
otherwise leave the mutation check with nothing to break."""

from __future__ import annotations

import pytest

from tests.faults.mutate import MUTANTS, REPO


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.name)
def test_every_mutant_edit_matches_the_code_once(mutant) -> None:  # type: ignore[no-untyped-def]
    for file, text, _ in mutant.edits:
        assert (REPO / file).read_text().count(text) == 1, f"{mutant.name}: its text in {file} is gone or repeated"
