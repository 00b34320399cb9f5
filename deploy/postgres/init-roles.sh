#!/bin/sh
# Creates the hub's two PostgreSQL roles and its database, once, when the official postgres
# image initialises an empty data directory (/docker-entrypoint-initdb.d, run as the image's
# superuser, which no hub process ever uses):
#   hub      the OWNER: runs `hub db migrate` (the migrate job), owns the database, schemas
#            and tables; not a superuser, cannot create roles or databases.
#   hub_app  the RUNTIME role every hub process serves with; owns nothing; `hub db migrate`
#            grants it data privileges, and only INSERT/SELECT on the audit tables.
# Passwords come from the environment (PGINIT_OWNER_PASSWORD, PGINIT_RUNTIME_PASSWORD); psql
# quotes them (:'var'), they never appear on a command line.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v owner_pw="$PGINIT_OWNER_PASSWORD" -v runtime_pw="$PGINIT_RUNTIME_PASSWORD" <<'SQL'
CREATE ROLE hub LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'owner_pw';
CREATE ROLE hub_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'runtime_pw';
CREATE DATABASE hub OWNER hub;
SQL
