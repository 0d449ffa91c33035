"""Dataset plugins: each reads one on-disk layout and yields :class:`Sample` lists."""
