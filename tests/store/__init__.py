"""Tests of syncer.store."""
