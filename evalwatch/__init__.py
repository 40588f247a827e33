"""evalwatch: video supervision of bid-evaluation rooms."""

__version__ = "0.1.0"
