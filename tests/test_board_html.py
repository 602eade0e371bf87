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


def test_a_watched_instance_page_reloads_itself_and_shows_no_editor() -> None:
    from motion.tools.browse import Summary

    info = Summary("C__i", version=3, seq=4, applied=3, failures=0)
    flows = {"::write": {"applied": 1}, "ask": {"applied": 2}}
    args = ("C", "i", info, {"n": 1}, flows)
    watched = H.instance_page(*args, csrf="t", read_only=False, watching=True)
    assert '<b id="version">3</b>' in watched and "Stop watching" in watched
    assert "<form" not in watched  # a reload would lose what was typed
    assert "<li>write_state: applied 1</li>" in watched  # the internal flow, plainly
    still = H.instance_page(*args, csrf="t", read_only=False)
    assert "watch=1" in still and '<form method="post" action="/instance/edit">' in still
    assert '<meta http-equiv="refresh" content="2">' in H.page("i", watched, reload=2)
    assert "http-equiv" not in H.page("i", still)
