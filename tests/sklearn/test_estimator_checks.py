"""scikit-learn's own API checks (``parametrize_with_checks``) on both estimators.

The check instances train 2 epochs of a 4-unit code: the checks test the API (shapes, dtypes,
cloning, pickling, errors, invariances), not the model's quality.
"""

from __future__ import annotations

from sklearn.utils.estimator_checks import parametrize_with_checks

from aelab.sklearn import AutoencoderOutlierDetector, AutoencoderTransformer

#: check name -> why it is expected to fail (scikit-learn's expected_failed_checks)
EXPECTED_FAILURES: dict[str, str] = {}


def expected_failed_checks(estimator):
    return EXPECTED_FAILURES


@parametrize_with_checks([AutoencoderTransformer(code_size=4, epochs=2, batch_size=32),
                          AutoencoderOutlierDetector(code_size=4, epochs=2, batch_size=32)],
                         expected_failed_checks=expected_failed_checks)
def test_sklearn_checks(estimator, check):
    check(estimator)
