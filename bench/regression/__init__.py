"""Regression tracking: compare two result sets, the committed smoke gate, metric history over commits."""
