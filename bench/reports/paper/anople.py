"""The AnoPLe paper's table layouts (Lee, Jang, Yoon 2024): grid layouts over published.yaml's data.

* ``anople_table1``: image and pixel AUROC, MVTec and VisA, 1/2/4 shots, w/ VG,
  one row per method (published-only rows for methods not registered here),
  multi-class / few-shot transfer from ``Method.paper_traits``;
* ``anople_table2``: 1-shot, w/o VG: MaPLe+DRAEM (the ``maple-draem`` alias),
  PromptAD-g, PromptAD, AnoPLe, AnoPLe* (``anople-oc``);
* ``anople_table3``: (a) ``interaction``, (b) ``crop_grid`` x ``view_signal``,
  (c) ``align``; ``anople_table4``: ``state_word`` (``cpe`` = the ensemble);
  ``anople_table5``: ``pseudo_anomalies``. Each row is an option setting of
  ``anople``; the default is the paper's last row.
"""

from __future__ import annotations

from fsadbench.reports.paper.grid import grid_layout

TABLE1 = grid_layout("anople_table1")
TABLE2 = grid_layout("anople_table2")
TABLE3 = grid_layout("anople_table3")
TABLE4 = grid_layout("anople_table4")
TABLE5 = grid_layout("anople_table5")
