"""Markdown and LaTeX (booktabs) renderers of a :class:`fsadbench.reports.tables.Table`.

A figure prints as ``mean ± std``; bold marks the best (``**..**`` /
``\\textbf``), ``†`` (``$^\\dagger$``) a figure not significantly worse than the
best, ``[a]`` (``$^{a}$``) a footnote whose text is in the table's notes.
Notes are printed above a Markdown table and under a LaTeX tabular (visible, in
``\\footnotesize``: a warning in a ``%`` comment is never read), footnotes as
``$^{a}$ ...``. A LaTeX tabular wider than the text is scaled down to the text
width (never up); the document needs ``\\usepackage{booktabs,graphicx,amssymb}``.
"""

from __future__ import annotations

import math
import unicodedata

from tabulate import tabulate

from fsadbench.core.errors import ConfigError
from fsadbench.reports.tables import Table, TextCell
from fsadbench.results.coverage import Figure


def _entry(c, bold: bool, close: bool, mark: str | None, fmt: str) -> str:
    if isinstance(c, TextCell):
        s = c.md if fmt == "md" else c.tex
    elif not isinstance(c, Figure) or math.isnan(c.mean):  # None: no entry
        s = "–" if fmt == "md" else "--"
    else:
        std = 0.0 if math.isnan(c.std) else c.std
        one = c.n_seeds == 1  # no spread to show: say so instead of a misleading ± 0.00
        if fmt == "md":
            s = f"{c.mean:.2f} (n = 1)" if one else f"{c.mean:.2f} ± {std:.2f}"
            s = f"**{s}**" if bold else s
        else:
            s = (f"\\textbf{{{c.mean:.2f}}}" if bold else f"{c.mean:.2f}") + (" ($n = 1$)" if one
                                                                              else f" $\\pm$ {std:.2f}")
    if close:
        s += " †" if fmt == "md" else "$^{\\dagger}$"
    if mark:
        s += f" [{mark}]" if fmt == "md" else f"$^{{{mark}}}$"
    return s


def _entries(t: Table, ri: int, cells, fmt: str) -> list[str]:
    return [_entry(c, (ri, j) in t.bold, (ri, j) in t.close, t.marks.get((ri, j)), fmt) for j, c in enumerate(cells)]


def to_markdown(t: Table) -> str:
    headers = list(t.row_headers)
    i = 0
    for g, span in t.groups:
        for _ in range(span):
            headers.append(f"{g} {t.columns[i]}".strip())
            i += 1
    body = [[h.md if isinstance(h, TextCell) else md_escape(h) for h in rh] + _entries(t, ri, cells, "md")
            for ri, (rh, cells) in enumerate(t.rows)]
    headers = [md_escape(h) for h in headers]
    lines = [f"**{t.title}**", ""] + [f"> {md_escape(n, cell=False)}" for n in t.notes] + [""]
    lines.append(tabulate(body, headers=headers, tablefmt="pipe", stralign="center", disable_numparse=True))
    return "\n".join(lines) + "\n"


def md_escape(s: object, cell: bool = True) -> str:
    """Text from labels and names, safe in Markdown: ``<`` as ``&lt;`` (never live HTML: no tag, comment or
    autolink opens without it, so ``->`` and ``a > b`` stay as written), a note's leading ``>`` as ``&gt;``
    (never a nested quote) and, in a table cell, ``|`` as ``\\|`` (never a column break)."""
    text = str(s).replace("<", "&lt;")
    if not cell and text.startswith(">"):
        text = "&gt;" + text[1:]
    return text.replace("|", "\\|") if cell else text


_LATEX_ESC = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
              "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}", "{": r"\{", "}": r"\}",
              "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
              "±": r"$\pm$", "≥": r"$\geq$", "†": r"$^{\dagger}$", "–": "--", "×": r"$\times$",
              "✓": r"$\checkmark$", "≤": r"$\leq$",
              # symbols pdflatex's default set-up rejects or sets differently per TeX release: math, always
              "→": r"$\rightarrow$", "←": r"$\leftarrow$", "↔": r"$\leftrightarrow$", "↑": r"$\uparrow$",
              "↓": r"$\downarrow$", "⇒": r"$\Rightarrow$", "⇐": r"$\Leftarrow$", "⇔": r"$\Leftrightarrow$",
              "≠": r"$\neq$", "≈": r"$\approx$", "∞": r"$\infty$", "−": "$-$", "∼": r"$\sim$", "∗": r"$\ast$",
              "·": r"$\cdot$", "•": r"$\bullet$", "°": r"$^{\circ}$", "µ": r"$\mu$", "✗": r"$\times$",
              "²": "$^{2}$", "³": "$^{3}$", "¹": "$^{1}$", "—": "---", "…": r"\ldots{}", "’": "'", "‘": "`",
              "“": "``", "”": "''", "«": "<<", "»": ">>", "ß": r"\ss{}", "æ": r"\ae{}", "Æ": r"\AE{}",
              "œ": r"\oe{}", "Œ": r"\OE{}", "ø": r"\o{}", "Ø": r"\O{}", "ł": r"\l{}", "Ł": r"\L{}",
              "\u00a0": "~", "⁄": "/"}


#: Greek letters: the math command where LaTeX has one, else the Latin letter it looks like (Alpha -> A)
_LATEX_ESC.update(zip("ΑΒΕΖΗΙΚΜΝΟΡΤΧο", "ABEZHIKMNOPTXo"))
_LATEX_ESC.update((ch, f"$\\{name}$") for ch, name in zip(
    "αβγδεζηθικλμνξπρςστυφχψωΓΔΘΛΞΠΣΥΦΨΩ",
    "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi pi rho varsigma sigma tau upsilon "
    "phi chi psi omega Gamma Delta Theta Lambda Xi Pi Sigma Upsilon Phi Psi Omega".split(), strict=True))
#: combining accents (of a letter's NFD form) -> the LaTeX accent command, so é is \'{e} in any set-up
_ACCENTS = {"\u0300": "`", "\u0301": "'", "\u0302": "^", "\u0303": "~", "\u0304": "=", "\u0306": "u",
            "\u0307": ".", "\u0308": '"', "\u030a": "r", "\u030b": "H", "\u030c": "v", "\u0323": "d",
            "\u0327": "c"}  # no ogonek: \k is not in the default OT1 encoding
#: every LaTeX table needs these packages in the document's preamble
LATEX_PREAMBLE_NOTE = "% needs \\usepackage{booktabs,graphicx,amssymb}"
#: scale the tabular down to the text width when wider, never up (graphicx: \width is the natural width)
FIT_WIDTH = "\\resizebox{\\ifdim\\width>\\linewidth\\linewidth\\else\\width\\fi}{!}{%"


def _latex_char(ch: str) -> str:
    if ch in _LATEX_ESC:
        return _LATEX_ESC[ch]
    if ch.isascii():
        return ch
    base, *marks = unicodedata.normalize("NFD", ch)
    if marks and base.isascii() and all(m in _ACCENTS for m in marks):  # é -> \'{e}, ǘ -> \'{\"{u}}
        for m in marks:
            base = f"\\{_ACCENTS[m]}{{{base}}}"
        return base
    if unicodedata.combining(ch):  # an accent LaTeX has no command for: the letter is kept without it
        return ""
    compat = unicodedata.normalize("NFKD", ch)  # ﬁ -> fi, ａ -> a, ½ -> 1/2
    return latex_escape(compat) if compat != ch else "?"


def latex_escape(s: str) -> str:
    """Text set verbatim by pdflatex in any set-up: TeX's specials escaped, symbols as math (``→``
    ``$\\rightarrow$``, Greek letters), accented letters as accent commands; a character with none of
    these (CJK, emoji) becomes ``?`` rather than a document that does not compile."""
    return "".join(_latex_char(ch) for ch in str(s))


def _row(vals: list[str]) -> str:
    """A tabular row; ``{}`` first when it opens with ``[``, which ``\\\\`` (and ``\\midrule``) of the line
    before would read as its optional argument."""
    line = " & ".join(vals) + " \\\\"
    return "{}" + line if line.lstrip().startswith("[") else line


def to_latex(t: Table) -> str:
    nrh, ncols = len(t.row_headers), len(t.columns)
    spec = "l" * nrh + "c" * ncols
    out = [LATEX_PREAMBLE_NOTE, "\\begin{table}[t]", "\\centering", f"\\caption{{{latex_escape(t.title)}}}",
           FIT_WIDTH, f"\\begin{{tabular}}{{{spec}}}", "\\toprule"]
    head1 = [""] * nrh
    rules, col = [], nrh + 1
    for g, span in t.groups:
        head1.append(f"\\multicolumn{{{span}}}{{c}}{{{latex_escape(g)}}}")
        rules.append(f"\\cmidrule(lr){{{col}-{col + span - 1}}}")
        col += span
    out.append(_row(head1))
    out.append(" ".join(rules))
    out.append(_row([latex_escape(h) for h in t.row_headers] + [latex_escape(c) for c in t.columns]))
    out.append("\\midrule")
    for ri, (rh, cells) in enumerate(t.rows):
        if ri in t.breaks:
            out.append("\\midrule")
        vals = [h.tex if isinstance(h, TextCell) else latex_escape(h) for h in rh] + _entries(t, ri, cells, "tex")
        out.append(_row(vals))
    out += ["\\bottomrule", "\\end{tabular}}"]  # closes FIT_WIDTH's box
    lines = [f"$^{{{latex_escape(n[1:n.index(']')])}}}$ {latex_escape(n[n.index(']') + 2:])}"
             if n.startswith("[") and "] " in n else latex_escape(n) for n in t.notes]
    if t.close:
        lines.insert(0, "$^{\\dagger}$ not significantly worse than the best (one-sided paired t over seeds)")
    if lines:
        out.append("\\par\\smallskip{\\footnotesize\\raggedright " + "\\par\n".join(lines) + "\\par}")
    out.append("\\end{table}")
    return "\n".join(out) + "\n"


def render(t: Table, fmt: str) -> str:
    if fmt in ("markdown", "md"):
        return to_markdown(t)
    if fmt in ("latex", "tex"):
        return to_latex(t)
    raise ConfigError(f"--format {fmt!r}: use markdown or latex")
