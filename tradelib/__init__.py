"""tradelib: a Jupyter-first environment that takes a crypto strategy from research to live."""

__version__ = "0.1.0"
