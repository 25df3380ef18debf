"""The DAG visualizer's server-side layout: columns by depth, rows by barycenter, big DAGs."""

from __future__ import annotations

from titan.dashboard.layout import layout


def positions(ids: list[str], parents: list[list[str]]) -> dict[str, tuple[int, int]]:
    g = layout(ids, parents)
    return {j: (g["x"][i], g["y"][i]) for i, j in enumerate(ids)}


def test_column_is_the_longest_path_from_a_root() -> None:
    # a -> b -> c, and a -> c directly: c sits after b, not next to a.
    ids = ["a", "b", "c", "d"]
    parents = [[], ["a"], ["a", "b"], []]
    g = layout(ids, parents)
    assert g["x"] == [0, 1, 2, 0]
    assert g["cols"] == 3 and g["rows"] == 2
    assert sorted(zip(g["edges"][::2], g["edges"][1::2], strict=True)) == [(0, 1), (0, 2), (1, 2)]


def test_rows_follow_the_parents_barycenter() -> None:
    # Roots r0..r3 in submission order; children submitted in the reverse order of their
    # parents: barycenter puts each child level with its parent.
    ids = ["r0", "r1", "r2", "r3", "k3", "k2", "k1", "k0", "mid"]
    parents = [[], [], [], [], ["r3"], ["r2"], ["r1"], ["r0"], ["r0", "r3"]]
    pos = positions(ids, parents)
    assert [pos[f"r{i}"] for i in range(4)] == [(0, 0), (0, 1), (0, 2), (0, 3)]
    column1 = sorted((y, j) for j, (x, y) in pos.items() if x == 1)
    # mid's barycenter is 1.5: between k1 (1) and k2 (2); ties keep submission order.
    assert [j for _, j in column1] == ["k0", "k1", "mid", "k2", "k3"]


def test_ties_keep_submission_order_and_rows_are_dense() -> None:
    ids = ["root"] + [f"c{i}" for i in range(5)]
    g = layout(ids, [[]] + [["root"]] * 5)
    assert g["x"] == [0, 1, 1, 1, 1, 1]
    assert g["y"] == [0, 0, 1, 2, 3, 4]


def test_unknown_self_and_repeated_parents_are_ignored() -> None:
    g = layout(["a", "b"], [["ghost", "a"], ["a", "a", "b"]])
    assert g["edges"] == [0, 1]
    assert g["x"] == [0, 1]


def test_a_cycle_is_cut_at_its_earliest_job() -> None:
    # Validation rejects cycles before storage, but the DAG builder draws drafts with one:
    # a -> b -> c -> a is the chain a, b, c with an edge back, and nothing hangs or is lost.
    g = layout(["a", "b", "c"], [["c"], ["a"], ["b"]])
    assert g["x"] == [0, 1, 2]
    assert g["y"] == [0, 0, 0]
    # A cycle behind a root: the cycle's earliest job sits after the root.
    g = layout(["r", "x", "y", "z"], [[], ["r", "z"], ["x"], ["y"]])
    assert g["x"] == [0, 1, 2, 3]


def test_empty() -> None:
    assert layout([], []) == {"cols": 0, "rows": 0, "x": [], "y": [], "edges": []}


def test_ten_thousand_wide_fan_out() -> None:
    n = 10_000
    ids = ["root"] + [f"c{i}" for i in range(n)]
    g = layout(ids, [[]] + [["root"]] * n)
    assert (g["cols"], g["rows"]) == (2, n)
    assert g["x"][1:] == [1] * n
    assert g["y"][1:] == list(range(n))
    assert len(g["edges"]) == 2 * n


def test_ten_thousand_long_chain() -> None:
    # Deeper than Python's recursion limit: the layout must be iterative.
    n = 10_000
    ids = [f"n{i}" for i in range(n)]
    g = layout(ids, [[]] + [[f"n{i}"] for i in range(n - 1)])
    assert (g["cols"], g["rows"]) == (n, 1)
    assert g["x"] == list(range(n))
    assert g["y"] == [0] * n


def test_chain_submitted_backwards() -> None:
    # Children before parents in submission order: depth comes from the edges, not the order.
    n = 1000
    ids = [f"n{i}" for i in reversed(range(n))]
    parents = [[f"n{i - 1}"] if i else [] for i in reversed(range(n))]
    g = layout(ids, parents)
    assert g["x"] == list(reversed(range(n)))
