"""Method plugins: each implements :class:`fsadbench.method.Method`."""
