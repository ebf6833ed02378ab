"""Benchmarks: aelab's engine side by side with Keras/TensorFlow and a plain PyTorch loop.

Run ``python -m benchmarks.compare --help`` (from the ``.venv-bench`` environment, which has
TensorFlow; see ``benchmarks/RESULTS.md``).
"""
