"""Plugins: one Django app per folder, enabled by name in PAR_PLUGINS."""
