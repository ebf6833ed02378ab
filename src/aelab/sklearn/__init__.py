"""scikit-learn estimators on aelab's runs.

:class:`AutoencoderTransformer` (``fit``/``transform``/``inverse_transform``/``score_samples``:
the codes of an aelab autoencoder, in a ``Pipeline`` or a ``GridSearchCV``) and
:class:`AutoencoderOutlierDetector` (PyOD's conventions: ``decision_function`` higher is more
abnormal, ``threshold_`` from ``contamination``, ``predict`` 0/1). Each ``fit`` trains an aelab run
through the same API as ``aelab train`` (:func:`aelab.train`). ``import aelab`` never imports
this package (nor scikit-learn).
"""

from .estimators import AutoencoderTransformer, InputError
from .outliers import AutoencoderOutlierDetector

__all__ = ["AutoencoderOutlierDetector", "AutoencoderTransformer", "InputError"]
