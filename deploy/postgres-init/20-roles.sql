-- Runs once, when the test stand-in's container initialises its data directory,
-- after 10-platform.sql. What a platform's operator does out of band: the worker
-- role gets a login, and the backup role the rights a dump of the platform needs. Passwords come from Docker secrets, read by psql itself (a
-- backtick command reads the file), so they never appear in a process list.
\set worker_password `cat /run/secrets/worker_db_password`
\set backup_password `cat /run/secrets/backup_db_password`
alter role gustav_worker login password :'worker_password';
create role gustav_backup login bypassrls password :'backup_password' in role pg_read_all_data;
