"""Internals of the ``jv3`` command: file reading, index state, store URIs, output formatting.

Nothing here is public API; the command itself (:mod:`jv3_integrations.cli`) is the interface.
"""
