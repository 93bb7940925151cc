"""unidl's version: a leaf, so that any module (saving, the CLI) can read it without importing the package."""

__version__ = "0.1.0"
