"""Unit tests (no network) of the dashboard's rendering and edit parsing."""

from __future__ import annotations

import pytest

from motion.tools import board_html as H

SCRIPT = "<script>alert(1)</script>"


def test_values_are_rendered_by_type_and_escaped() -> None:
    assert H.render_value(SCRIPT) == "<pre>&lt;script&gt;alert(1)&lt;/script&gt;</pre>"
    assert H.render_value({"k": [1, SCRIPT]}).count("&lt;script&gt;") == 1
    assert "&quot;k&quot;: [" in H.render_value({"k": [1]})  # JSON
    assert H.render_value({1, 2}) == "<pre>{1, 2}</pre>"  # repr
    assert "&lt;" in H.render_value(type("T", (), {"__repr__": lambda self: "<T>"})())
    assert "<script" not in H.page(SCRIPT, H.notice(SCRIPT))
    assert H.link("/x", a='"><script>', b="&") == "/x?a=%22%3E%3Cscript%3E&amp;b=%26"


def test_only_values_json_gives_back_exactly_are_editable() -> None:
    for value in ("s", 1, 1.5, True, [1, "a"], {"a": {"b": [1]}}):
        assert H.editable(value), value
    for value in ({1: "a"}, [(1, 2)], {"a": {1, 2}}, float("nan"), [float("inf")], None, b"x"):
        assert not H.editable(value), value


def test_edits_keep_the_type_of_the_current_value() -> None:
    assert H.parse_edit("old", " new ") == " new "
    assert H.parse_edit(3, " 12 ") == 12 and H.parse_edit(0.5, "2") == 2.0
    assert H.parse_edit(False, "true") is True and H.parse_edit(True, "false") is False
    assert H.parse_edit([], '["a", 1]') == ["a", 1]
    assert H.parse_edit({}, '{"a": 1}') == {"a": 1}
    for current, typed in ((3, "x"), (0.5, "nan"), (True, "yes"), ([], "{}"), ({}, "[]")):
        with pytest.raises(ValueError):
            H.parse_edit(current, typed)
