"""Results: the versioned record schema and store, and what may be read from records.

``records`` (schema, injective paths, atomic writes, ``superseded/`` instead of
overwrites, migration of old schemas), ``coverage`` (figures with the
categories and seeds they cover and why the rest is missing), ``comparability``
(what a results folder must not mix, per-cell checks, the commits behind a
figure), ``stats`` (paired and Welch t tests over seeds), ``aggregate`` (pandas
frames). Imports ``core`` only (no torch).
"""
