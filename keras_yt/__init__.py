"""keras_yt: Keras 3 layers and models for the YouTube recommender (Covington et al., 2016).

Submodules: `layers`, `losses`, `models`, `optimizers`, `metrics`, `data`, `datasets`, `serving`.
`serving` imports PyNNDescent only when an approximate index is built.
"""

__version__ = "0.1.0"
