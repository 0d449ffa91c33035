"""The frozen backbone: the open_clip adapter (every image and text tower pass) and the feature store.

``clip`` loads a model by name and pretrained tag, from a local checkpoint
(``weights_only=True``) or with random weights; ``towers`` owns every pass
through open_clip internals; ``features`` caches per-image encoder outputs by
content digest and a versioned feature spec. Imports only ``core``.
"""
