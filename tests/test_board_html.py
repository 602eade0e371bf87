"""Unit tests (no network) of the dashboard's rendering and edit parsing."""

from __future__ import annotations

import pytest

from motion.tools import board_html as H
from motion.tools import board_state as S

SCRIPT = "<script>alert(1)</script>"


def test_values_are_rendered_by_type_and_escaped() -> None:
    assert S.render_value(SCRIPT) == "<pre>&lt;script&gt;alert(1)&lt;/script&gt;</pre>"
    assert S.render_value({"k": [1, SCRIPT]}).count("&lt;script&gt;") == 1
    assert "&quot;k&quot;: [" in S.render_value({"k": [1]})  # JSON
    assert S.render_value({1, 2}) == "<pre>{1, 2}</pre>"  # repr
    assert "&lt;" in S.render_value(type("T", (), {"__repr__": lambda self: "<T>"})())
    assert "<script" not in H.page(SCRIPT, H.notice(SCRIPT))
    assert H.link("/x", a='"><script>', b="&") == "/x?a=%22%3E%3Cscript%3E&amp;b=%26"


def test_only_values_json_gives_back_exactly_are_editable() -> None:
    for value in ("s", 1, 1.5, True, [1, "a"], {"a": {"b": [1]}}):
        assert S.editable(value), value
    for value in ({1: "a"}, [(1, 2)], {"a": {1, 2}}, float("nan"), [float("inf")], None, b"x"):
        assert not S.editable(value), value


def test_edits_keep_the_type_of_the_current_value() -> None:
    assert S.parse_edit("old", " new ") == " new "
    assert S.parse_edit(3, " 12 ") == 12 and S.parse_edit(0.5, "2") == 2.0
    assert S.parse_edit(False, "true") is True and S.parse_edit(True, "false") is False
    assert S.parse_edit([], '["a", 1]') == ["a", 1]
    assert S.parse_edit({}, '{"a": 1}') == {"a": 1}
    for current, typed in ((3, "x"), (0.5, "nan"), (True, "yes"), ([], "{}"), ({}, "[]")):
        with pytest.raises(ValueError):
            S.parse_edit(current, typed)


def test_a_watched_instance_page_reloads_itself_and_shows_no_editor() -> None:
    from motion.tools.board_instance_html import InstanceView, instance_page
    from motion.tools.browse import Summary

    info = Summary("C__i", version=3, seq=4, applied=3, failures=0)
    flows = {"::write": {"applied": 1}, "ask": {"applied": 2}}
    view = InstanceView("C", "i", info, {"n": 1}, flows)
    watched = instance_page(view, csrf="t", read_only=False, watching=True)
    assert '<b id="version">3</b>' in watched and "Stop watching" in watched
    assert "<form" not in watched  # a reload would lose what was typed
    assert "<li>write_state: applied 1</li>" in watched  # the internal flow, plainly
    still = instance_page(view, csrf="t", read_only=False)
    assert "watch=1" in still and '<form method="post" action="/instance/edit">' in still
    assert '<meta http-equiv="refresh" content="2">' in H.page("i", watched, reload=2)
    assert "http-equiv" not in H.page("i", still)


def test_tables_render_as_html_tables_escaped() -> None:
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    from motion.mtable import MTable

    frame = pd.DataFrame({"name": ["a", SCRIPT], "n": [1, 2]})
    for value in (frame, MTable.from_pandas(frame)):
        shown = S.render_value(value)
        assert shown.startswith('<table class="data"><tr><th>name</th><th>n</th></tr>'), shown
        assert "<td>&lt;script&gt;alert(1)&lt;/script&gt;</td>" in shown and "<script" not in shown
        assert "2 rows, 2 columns" in shown
    big = pd.DataFrame({"i": range(S.TABLE_ROWS + 7)})
    assert f"first {S.TABLE_ROWS} of {S.TABLE_ROWS + 7} rows" in S.render_value(big)


def test_a_diff_shows_what_changed_escaped() -> None:
    old = {"summary": "line one\nline two", "n": 1, "same": [1], "gone": "x"}
    new = {"summary": f"line one\n{SCRIPT}", "n": 2, "same": [1], "added": {"k": 1}}
    shown = S.diff_html(old, new)
    assert '<span class="del">-line two</span>' in shown
    assert '<span class="add">+&lt;script&gt;alert(1)&lt;/script&gt;</span>' in shown
    assert 'data-key="same"' not in shown and "<script" not in shown
    assert 'data-key="gone"><h3>gone <span class="muted">removed' in shown
    assert 'data-key="added"><h3>added <span class="muted">added' in shown
    assert "No state key differs" in S.diff_html(old, dict(old))


def test_charts_are_inline_svg_of_the_counters() -> None:
    from motion.tools.board_charts import BUCKET_MINUTES, component_charts
    from motion.tools.series import Minute

    minutes = [Minute(m) for m in range(24 * 60)]
    minutes[-1] = Minute(24 * 60 - 1, {"ask": {"applied": 5, "failed": 1}}, lag_ms=300,
                         lag_n=6, backlog=4, backlog_n=2, backlog_max=3)  # fmt: skip
    shown = component_charts("<C>", minutes)
    assert shown.count("<svg") == 3 and "<script" not in shown and "&lt;C&gt;" in shown
    assert 'data-series="applied" data-total="5"' in shown
    assert 'data-series="failed" data-total="1"' in shown
    assert 'data-series="mean" data-total="50"' in shown  # 300 ms / 6 updates
    assert 'data-series="max" data-total="3"' in shown
    assert shown.count(",") > 3 * (24 * 60 // BUCKET_MINUTES)  # one point per bucket


def test_holds_are_shown_with_the_pause_controls() -> None:
    from motion.tools.board_instance_html import InstanceView, instance_page
    from motion.tools.browse import Summary

    info = Summary("C__i", version=2, seq=5, applied=2, failures=1)
    info.holds = {"*": "pause", "<ask>": "failed:3"}
    view = InstanceView("C", "i", info, {}, {"<ask>": {"failed": 1}})
    shown = instance_page(view, csrf="t", read_only=False)
    assert '<li data-hold="*">every flow: held (pause)</li>' in shown
    assert '<li data-hold="&lt;ask&gt;">&lt;ask&gt;: held (failed:3)</li>' in shown
    assert '<input type="hidden" name="flow" value="&lt;ask&gt;">' in shown
    quiet = instance_page(InstanceView("C", "i", Summary("C__i", 1, 0, 0, 0), {}, {}),
                          csrf="t", read_only=False)  # fmt: skip
    assert 'id="holds">No hold.' in quiet
    assert "/instance/pause" not in instance_page(view, csrf="t", read_only=True)
