-- The login role Grafana reads through, created or given its password again (idempotent);
-- `syncer grant-read` then gives it the syncer_bi views and nothing else.
-- psql -v role=NAME -v password=SECRET -f grafana-role.sql
SELECT format('CREATE ROLE %I LOGIN', :'role')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role') \gexec
SELECT format('ALTER ROLE %I LOGIN PASSWORD %L', :'role', :'password') \gexec
