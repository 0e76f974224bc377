#!/bin/sh
# Roles of a compose deployment, run once by the postgres image when its volume is new, as the
# image's superuser. See docs/operations.md, "Database roles".
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v api_password="$API_DB_PASSWORD" -v admin_password="$ADMIN_DB_PASSWORD" <<'SQL'
CREATE EXTENSION IF NOT EXISTS vector;
CREATE ROLE sovereign_app NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
CREATE ROLE sovereign_api LOGIN PASSWORD :'api_password'
    NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS IN ROLE sovereign_app;
CREATE ROLE sovereign_tenant_admin NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
CREATE ROLE sovereign_admin LOGIN PASSWORD :'admin_password' IN ROLE sovereign_tenant_admin;
SQL
