"""Tests of syncer.parse."""
