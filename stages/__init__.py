"""The example experiment: an MLP on scikit-learn's bundled handwritten digits."""
