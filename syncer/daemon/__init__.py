"""`syncer run`: the scheduler, `/healthz` and `/metrics`."""
