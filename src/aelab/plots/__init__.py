"""Drawing from arrays: every figure aelab makes, as PNG bytes, from numbers and arrays alone.

A layer-1 package (it imports no other aelab module): the run's ``recon.png``, the report's
figures and ``aelab latent``'s maps are all drawn here, from what their callers computed or loaded.

* :mod:`aelab.plots.figures` — loss curves, reconstruction grids, heat strips of vectors, paired
  grids, sweep panels.
* :mod:`aelab.plots.latent` — maps of codes coloured by label, rows of decoded images, a 2-D
  latent decoded on a grid.
"""

from .figures import (DPI, LEGACY_TERM, MIN_REL_SPAN, STRIP_VALUE, feature_error_plot, infer_shape, loss_curves,
                      paired_grid, png, recon_grid, sweep_plot, sweep_ylim)
from .latent import image_like, image_rows, latent_maps, legend_name, manifold, map_panel

__all__ = ["DPI", "LEGACY_TERM", "MIN_REL_SPAN", "STRIP_VALUE", "feature_error_plot", "image_like", "image_rows",
           "infer_shape", "latent_maps", "legend_name", "loss_curves", "manifold", "map_panel", "paired_grid", "png",
           "recon_grid", "sweep_plot", "sweep_ylim"]
