"""The papers' table layouts: published figures (``published``), measured figures and diffs
(``assemble``), the layouts themselves (``layouts``) and the ``paper-table`` command (``cli``).

Everything paper-specific (which methods, datasets, option switches, labels, the protocol a figure must
match before a diff is printed) is data in ``fsadbench/data/published.yaml`` and the paper configs;
the code names layouts, never a method's options.
"""
