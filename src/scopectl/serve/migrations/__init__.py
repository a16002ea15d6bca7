"""Alembic migrations of the service's database (run by :meth:`scopectl.serve.db.Database.migrate`)."""
