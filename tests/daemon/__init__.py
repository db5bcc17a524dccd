"""Tests of syncer.daemon."""
