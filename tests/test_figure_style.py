"""The shared figure checks catch what makes a figure unreadable (they run in every figure job)."""

from __future__ import annotations

from tsdcls.figures.style import PALETTE, distinct_colours, figure_problems, label_axes, new_figure


def _panel():
    fig, axes = new_figure()
    ax = axes[0][0]
    label_axes(ax, x="x", y="y", title="t")
    return fig, ax


def test_two_series_in_one_colour_and_style_are_a_problem() -> None:
    fig, ax = _panel()
    ax.plot([0, 1], [0, 1], color=PALETTE[0], label="a")
    ax.plot([0, 1], [1, 0], color=PALETTE[0], label="b")
    ax.legend(fontsize=8)
    assert any("share colour" in p for p in figure_problems(fig))
    ax.lines[1].set_linestyle("--")  # a second encoding: allowed
    assert not figure_problems(fig)


def test_tiny_legend_is_a_problem() -> None:
    fig, ax = _panel()
    ax.plot([0, 1], [0, 1], label="a")
    ax.plot([0, 1], [1, 0], label="b")
    ax.legend(fontsize=5)
    assert any("legend text 5 pt" in p for p in figure_problems(fig))


def test_distinct_colours_never_repeat_within_a_panel() -> None:
    names = [f"dcls_v0 K={k}/9" for k in range(1, 8)]
    colours = distinct_colours(names)
    assert len(set(colours.values())) == len(names)
