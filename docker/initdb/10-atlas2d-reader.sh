#!/bin/sh
# Run by the postgres image when it initialises an empty data volume: the login that
# `atlas2d sql` uses (ATLAS2D_READER_DATABASE_URL in compose.yaml). It can only read: a
# member of atlas2d_reader, whose SELECT grants the first `atlas2d db upgrade` adds.
set -e
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v reader_password="${ATLAS2D_READER_PASSWORD:-atlas2d_sql}" <<'SQL'
CREATE ROLE atlas2d_reader NOLOGIN;
CREATE ROLE atlas2d_sql LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION
    PASSWORD :'reader_password' IN ROLE atlas2d_reader;
SQL
