"""Service functions: every use case once, called by the API, the web UI and the CLI alike.

Each takes a session and the Actor asking, applies the domain rules, and commits its own work.
"""
