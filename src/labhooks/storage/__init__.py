"""Storage: tables, the engine, migrations. The only package that knows SQLite from PostgreSQL."""
