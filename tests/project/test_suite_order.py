"""The suite's own order (tests/conftest.py): files holding `slow` tests run first."""
from __future__ import annotations


def test_files_with_slow_tests_come_first(request):
    items = request.session.items
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    order = list(dict.fromkeys(item.path for item in items))  # each file once, as collected
    flags = [path in slow_files for path in order]
    assert flags == sorted(flags, reverse=True), [p.name for p in order]
    counts = {path: sum(item.path == path for item in items) for path in order}
    for group in (True, False):  # within each group, the files with more tests first
        sizes = [counts[p] for p, f in zip(order, flags) if f is group]
        assert sizes == sorted(sizes, reverse=True)
