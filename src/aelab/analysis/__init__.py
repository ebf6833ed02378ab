"""Analysis commands: what a client runs on finished runs (``aelab latent``: :mod:`aelab.analysis.latent`).

The top layer beside the CLI: it may use runs, studies and reports, and nothing below imports it.
"""
