"""Reports: the Table model, Markdown / LaTeX renderers, figures and the paper table layouts.

Reads records through ``results``; never runs a method except the qualitative
figure grid, which fits through ``run``.
"""
