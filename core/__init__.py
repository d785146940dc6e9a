"""Vocabulary shared by every layer: the error tree, ids and the caller's identity.

It imports nothing from ``handler``, ``runner`` or ``storage``; they all import it.
"""
