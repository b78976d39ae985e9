"""Vision models: detector backends, the model manager, manifests, CLIP attributes, training.

Import the submodules directly; this package imports nothing heavy so configuration stays light.
"""
