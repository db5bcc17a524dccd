"""Bytes to rows: blocks of whole CSV records, typed rows or rejected rows; no HTTP, no DB."""
