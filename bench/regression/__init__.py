"""Regression tracking: where records come from (``sources``), comparing two sides with t-based noise bands
(``compare``, ``render``, ``cli``), the committed smoke gate and baseline command (``gate``), and a metric
over commits (``history``)."""
