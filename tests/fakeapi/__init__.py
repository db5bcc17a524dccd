"""Tests of syncer.fakeapi."""
