"""fmtune: tune, train and serve Keras image classifiers with distributed Keras Tuner."""

__version__ = "0.1.0"
