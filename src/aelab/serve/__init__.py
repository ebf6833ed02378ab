"""``aelab serve``: the browser lab (train and watch, draw and reconstruct, explore the code)."""
