"""The schema's revisions, ``NNNN_what.py`` with revision id ``NNNN``, each after the one before.

Each describes the tables it touches itself, never through :mod:`moodlens.store.schema`, which
moves on with later revisions.
"""
