"""Reports: the Table model and builders (``tables``), Markdown / LaTeX (``render``), the report of a
results folder (``report``), figures, and the papers' table layouts (``paper``).

Reads records through ``results``; never runs a method except the qualitative
figure grid, which fits through ``run``.
"""
