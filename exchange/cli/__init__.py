"""The ``exchange`` command line: one entry point for every role and admin task."""
