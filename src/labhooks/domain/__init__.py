"""The rules of labhooks as plain Python: no web framework, no database.

Everything here is a pure function or a small value type, so the API, the web UI, the CLI and the
delivery engine all apply the same rule, and tests can check it exhaustively.
"""
