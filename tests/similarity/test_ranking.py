"""Rankings read off an affinity: the hubs among the sources."""

from __future__ import annotations

from modelspace.similarity import hubs


def test_hubs_are_sources_in_over_a_third_of_the_top_slots() -> None:
    ranking = {"t1": [("h", .9)], "t2": [("h", .8)], "t3": [("x", .7)], "t4": [("y", .6)], "h": [("t1", .5)]}
    assert hubs(ranking) == {"h": 2}  # 2 of 5 > 1/3; x, y, t1 once
    assert hubs({"a": ["b"], "b": ["a"], "c": ["a"]}) == {"a": 2}
    assert hubs({"a": ["b"], "b": ["c"], "c": ["a"]}) == {}
