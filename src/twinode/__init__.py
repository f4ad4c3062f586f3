"""twinode: continuous-time patient digital twins."""

__version__ = "0.1.0"
