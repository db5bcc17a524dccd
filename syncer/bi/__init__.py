"""The analytics layer's surface: the read-only role, the HTML report, the Grafana dashboard.

The views themselves live in a migration (`0004_bi_views`); this package only reads them.
"""
