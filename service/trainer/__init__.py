"""Offline artifact producers: demo and zero-shot registries (and later, learned prompts).

Imports the CLIP text tower; the server never imports this package.
"""
