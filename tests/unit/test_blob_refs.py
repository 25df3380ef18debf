"""The list of what names a blob (``storage/blob_refs.py``) covers the schema: every text
column, and every column whose name says sha or hash, is either a reference or named as no
reference with why. A column added to hold a blob's name fails here until it is listed, so
garbage collection cannot delete what it names."""

from __future__ import annotations

import sqlalchemy as sa

from titan.storage import schema as t
from titan.storage.blob_refs import NOT_REFERENCES, REFERENCES


def _suspects() -> set[str]:
    return {f"{table.name}.{c.name}" for table in t.metadata.sorted_tables for c in table.columns
            if isinstance(c.type, sa.Text) or "sha" in c.name or "hash" in c.name}


def test_every_text_or_hash_column_is_classified() -> None:
    referenced = {f"{r.column.table.name}.{r.column.name}" for r in REFERENCES}
    unclassified = _suspects() - referenced - set(NOT_REFERENCES)
    assert not unclassified, (f"columns neither in blob_refs.REFERENCES nor in NOT_REFERENCES: "
                              f"{sorted(unclassified)}")


def test_the_lists_name_real_columns_and_do_not_overlap() -> None:
    columns = {f"{table.name}.{c.name}" for table in t.metadata.sorted_tables
               for c in table.columns}
    assert set(NOT_REFERENCES) <= columns, sorted(set(NOT_REFERENCES) - columns)
    referenced = [f"{r.column.table.name}.{r.column.name}" for r in REFERENCES]
    assert len(referenced) == len(set(referenced))
    # actions' hashes are both: a blob's name where *_blob is set, and listed as not one
    # otherwise (each listed entry says so).
    overlap = set(referenced) & set(NOT_REFERENCES)
    assert overlap == {"actions.inputs_hash", "actions.outputs_hash"}
    assert all(r.why for r in REFERENCES) and all(NOT_REFERENCES.values())
