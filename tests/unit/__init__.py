"""In-process tests: no server processes."""
