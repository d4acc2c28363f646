"""Tests mirroring the package; see tests/README layout in ARCHITECTURE.md."""
