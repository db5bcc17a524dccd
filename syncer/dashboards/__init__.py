"""Grafana dashboard JSON and provisioning files for the `syncer_bi` views (data only)."""
