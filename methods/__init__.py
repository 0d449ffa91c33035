"""Method plugins: each implements :class:`fsadbench.protocol.method.Method`."""
