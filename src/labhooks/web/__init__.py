"""The web UI (SPEC §6): server-rendered pages over the same services as the API."""
