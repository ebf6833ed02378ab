"""scikit-learn estimators on aelab's runs: ``AutoencoderTransformer``, ``AutoencoderOutlierDetector``."""
