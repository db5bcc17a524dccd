"""Tests of syncer.client."""
