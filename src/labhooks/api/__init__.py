"""The HTTP API (SPEC §7): thin handlers over labhooks.services."""
