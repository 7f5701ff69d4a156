"""Database layer: ORM models, column types, engines and the embedded server."""
