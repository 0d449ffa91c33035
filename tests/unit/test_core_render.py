"""The Markdown and LaTeX renderers, checked against whole outputs written out by hand.

A small table holds every kind of entry a reader meets: a bold figure, a figure over one seed (its std
is undefined: "(n = 1)", never a misleading "± 0.00"), a dagger, a footnote mark, "n/a", a missing
entry, a row header given as text for both formats, and a rule between shot blocks. Names from data
(method labels, dataset names, notes) must come out escaped: never live HTML or a column break in
Markdown, never a broken LaTeX document.

EQUIVALENT_MUTANTS lists the surviving mutants of reports/render.py that cannot change behaviour.
"""

from __future__ import annotations

import pytest

from fsadbench.core.errors import ConfigError
from fsadbench.reports.render import latex_escape, md_escape, render, to_latex, to_markdown
from fsadbench.reports.tables import MISSING, Table, TextCell
from fsadbench.results.coverage import Figure

NAN = float("nan")


def _md_row(text: str, i: int) -> list[str]:
    """The cells of line ``i`` of a Markdown output, stripped of tabulate's padding."""
    return [c.strip() for c in text.splitlines()[i].strip().strip("|").split("|")]


def _table(**kw) -> Table:
    rows = [(["1-shot", "A|<b>"], [Figure(91.234, 0.5, {0: 90.734, 1: 91.734}), Figure(80.0, NAN, {0: 80.0}),
                                    MISSING]),
            (["2-shot", TextCell("B*", "B$^*$")], [Figure(90.0, 1.0, {0: 89.0, 1: 91.0}), TextCell("n/a", "n/a"),
                                                   None])]
    args = dict(notes=["50% of x_y & <z>", "[a] B: no figure"], breaks=[1], bold={(0, 0)}, close={(1, 0)},
                marks={(1, 1): "a"})
    args.update(kw)
    return Table("pixel AUROC", ["shots", "method"], [("mvtec_ad", 2), ("visa", 1)], ["w/o VG", "w/ VG", "w/o VG"],
                 rows, **args)


MARKDOWN = """\
**pixel AUROC**

> 50% of x_y & &lt;z>
> [a] B: no figure

|  shots  |  method   |  mvtec_ad w/o VG  |  mvtec_ad w/ VG  |  visa w/o VG  |
|:-------:|:---------:|:-----------------:|:----------------:|:-------------:|
| 1-shot  | A\\|&lt;b> | **91.23 ± 0.50**  |  80.00 (n = 1)   |       –       |
| 2-shot  |    B*     |  90.00 ± 1.00 †   |     n/a [a]      |       –       |
"""

LATEX = r"""% needs \usepackage{booktabs,graphicx,amssymb}
\begin{table}[t]
\centering
\caption{pixel AUROC}
\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%
\begin{tabular}{llccc}
\toprule
 &  & \multicolumn{2}{c}{mvtec\_ad} & \multicolumn{1}{c}{visa} \\
\cmidrule(lr){3-4} \cmidrule(lr){5-5}
shots & method & w/o VG & w/ VG & w/o VG \\
\midrule
1-shot & A\textbar{}\textless{}b\textgreater{} & \textbf{91.23} $\pm$ 0.50 & 80.00 ($n = 1$) & -- \\
\midrule
2-shot & B$^*$ & 90.00 $\pm$ 1.00$^{\dagger}$ & n/a$^{a}$ & -- \\
\bottomrule
\end{tabular}}
\par\smallskip{\footnotesize\raggedright $^{\dagger}$ not significantly worse than the best (one-sided paired t over seeds)\par
50\% of x\_y \& \textless{}z\textgreater{}\par
$^{a}$ B: no figure\par}
\end{table}
"""


def test_markdown_by_hand():
    assert to_markdown(_table()) == MARKDOWN
    assert render(_table(), "markdown") == render(_table(), "md") == MARKDOWN


def test_latex_by_hand():
    assert to_latex(_table()) == LATEX
    assert render(_table(), "latex") == render(_table(), "tex") == LATEX


def test_unknown_format_is_refused_naming_the_choices():
    with pytest.raises(ConfigError, match=r"--format 'html': use markdown or latex"):
        render(_table(), "html")


def test_latex_without_dagger_or_notes_has_no_footnote_block():
    tex = to_latex(_table(notes=[], close=set()))
    assert "\\footnotesize" not in tex and "\\dagger" not in tex
    assert tex.endswith("\\bottomrule\n\\end{tabular}}\n\\end{table}\n")
    # a dagger alone still explains itself under the table
    tex = to_latex(_table(notes=[]))
    assert tex.endswith("\\end{tabular}}\n\\par\\smallskip{\\footnotesize\\raggedright $^{\\dagger}$ not "
                        "significantly worse than the best (one-sided paired t over seeds)\\par}\n\\end{table}\n")


def test_bold_entry_with_one_seed_a_mark_and_a_dagger_in_both_formats():
    one = Table("t", ["m"], [("d", 1)], ["v"], [(["A"], [Figure(75.0, NAN, {3: 75.0})])], bold={(0, 0)},
                close={(0, 0)}, marks={(0, 0): "b"})
    assert _md_row(to_markdown(one), -1) == ["A", "**75.00 (n = 1)** † [b]"]
    assert "A & \\textbf{75.00} ($n = 1$)$^{\\dagger}$$^{b}$ \\\\" in to_latex(one)


def test_undefined_spread_over_two_seeds_prints_zero_and_an_undefined_mean_prints_a_dash():
    t = Table("t", ["m"], [("d", 2)], ["v", "w"], [(["A"], [Figure(75.0, NAN, {0: 75.0, 1: 75.0}),
                                                            Figure(NAN, NAN, {0: NAN, 1: NAN})])])
    assert _md_row(to_markdown(t), -1) == ["A", "75.00 ± 0.00", "–"]
    assert "A & 75.00 $\\pm$ 0.00 & -- \\\\" in to_latex(t)


def test_notes_outside_a_cell_keep_their_bars_and_a_bracket_without_a_space_is_not_a_footnote():
    t = _table(notes=["a | b", "[x]y", "[c] z_1 [see] [d]"])
    assert to_markdown(t).splitlines()[2:5] == ["> a | b", "> [x]y", "> [c] z_1 [see] [d]"]
    tex = to_latex(t)
    assert "a \\textbar{} b\\par\n[x]y\\par\n$^{c}$ z\\_1 [see] [d]\\par}" in tex


def test_labels_that_look_like_numbers_print_verbatim():
    t = Table("t", ["method"], [("1e3", 1)], ["007"], [(["0042"], [TextCell("1.50", "1.50")])])
    assert _md_row(to_markdown(t), 3) == ["method", "1e3 007"] and _md_row(to_markdown(t), 5) == ["0042", "1.50"]


def test_escapes_every_special_character():
    assert latex_escape("\\&%$#_<>|{}~^±≥†–×✓≤ok") == (
        r"\textbackslash{}\&\%\$\#\_\textless{}\textgreater{}\textbar{}\{\}\textasciitilde{}"
        r"\textasciicircum{}$\pm$$\geq$$^{\dagger}$--$\times$$\checkmark$$\leq$ok")
    assert md_escape("<a|b>") == "&lt;a\\|b>" and md_escape("<a|b>", cell=False) == "&lt;a|b>"
    # '>' opens nothing in Markdown: arrows stay arrows ('-&gt;' leaked before); a note's leading '>' would
    # nest a quote
    assert md_escape("x -> y") == "x -> y" and md_escape("a > b", cell=False) == "a > b"
    assert md_escape("> x", cell=False) == "&gt; x" and md_escape("> x") == "> x"
    assert md_escape(3) == "3"


def test_group_headers_join_group_and_column_and_an_empty_group_label_leaves_the_column_alone():
    t = Table("t", ["m"], [("", 1), ("d", 1)], ["v", "w"], [(["A"], [MISSING, MISSING])])
    assert _md_row(to_markdown(t), 3) == ["m", "v", "d w"]
    assert "\\multicolumn{1}{c}{} & \\multicolumn{1}{c}{d} \\\\\n\\cmidrule(lr){2-2} \\cmidrule(lr){3-3}" in to_latex(t)


EQUIVALENT_MUTANTS = {
    "render.to_markdown: md_escape(n, cell=None) for cell=False": "None is falsy like False: the same branch",
    "render.to_latex: _entries(..., None / 'XXtexXX' / 'TEX') for 'tex'":
        "_entry tests fmt == 'md' only; every other value is the LaTeX branch",
}
