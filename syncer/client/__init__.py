"""The Cursor API client: one session, typed errors, retries, the rate budget."""
