"""docs/troubleshooting.md's fault table is what the fault tests' markers say
(tests/fault_table.py)."""

from __future__ import annotations

import pytest

from tests.fault_table import COLUMNS, PAGE, collect, page_block, render


def test_every_fault_test_has_its_row_in_the_docs() -> None:
    rows = collect()
    assert rows, "no test carries @pytest.mark.fault"
    assert page_block(PAGE.read_text()) == render(rows), (
        "docs/troubleshooting.md fault table is stale: run python tests/fault_table.py --write"
    )


def test_a_marker_without_a_cell_is_refused(tmp_path) -> None:
    (tmp_path / "test_x.py").write_text(
        "import pytest\n@pytest.mark.fault(fault='f', injected='i', sees='s')\ndef test_a(): pass\n"
    )
    with pytest.raises(ValueError, match="lacks \\['kept'\\]"):
        collect(tmp_path)
    assert set(COLUMNS) == {"fault", "injected", "sees", "kept"}
