"""Alembic's script folder for the store's schema: ``env.py``, the revision template and
``versions/``, one file per schema change (see :mod:`moodlens.store`)."""
