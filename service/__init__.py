"""OrdinalCLIP ordinal-attribute prediction service."""

__version__ = "0.1.0"
