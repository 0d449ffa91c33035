"""The torch-free bottom layer: errors, plain data types, defaults, the plugin registry, provenance.

Everything above imports from here; nothing here imports torch or any other
layer, so a dataset plugin or a report can be loaded without a model.
"""
