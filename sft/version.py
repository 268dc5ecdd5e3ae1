"""The library's version (the distribution's, read by pyproject.toml; recorded in saved SFTs)."""

__version__ = "0.2.0"
