-- Only in the chaos database: the records the checks read.
create table chaos_job_log (
  seq bigserial primary key, job_id uuid not null, op text not null, status text,
  lease_key uuid, leased_until timestamptz, retry_count int,
  at timestamptz not null default clock_timestamp());
create index on chaos_job_log (job_id, seq);
create function chaos_log_job() returns trigger language plpgsql security definer
set search_path = public, pg_temp as $$
begin
  if tg_op = 'DELETE' then
    insert into chaos_job_log (job_id, op) values (old.id, 'delete');
    return old;
  end if;
  if tg_op = 'INSERT' or (new.status, new.lease_key, new.leased_until, new.retry_count)
       is distinct from (old.status, old.lease_key, old.leased_until, old.retry_count) then
    insert into chaos_job_log (job_id, op, status, lease_key, leased_until, retry_count)
    values (new.id, lower(tg_op), new.status, new.lease_key, new.leased_until, new.retry_count);
  end if;
  return new;
end $$;
create trigger chaos_log_job after insert or update or delete on learning_submission_jobs
  for each row execute function chaos_log_job();
create table chaos_submission_log (
  seq bigserial primary key, submission_id uuid not null, status text not null,
  at timestamptz not null default clock_timestamp());
create function chaos_log_submission() returns trigger language plpgsql security definer
set search_path = public, pg_temp as $$
begin
  insert into chaos_submission_log (submission_id, status) values (new.id, new.analysis_status);
  return new;
end $$;
create trigger chaos_log_submission after update on learning_submissions for each row
  when (new.analysis_status is distinct from old.analysis_status)
  execute function chaos_log_submission();
create table chaos_expected (
  submission_id uuid primary key, kind text not null, initial_retry_count int not null,
  status text not null, error_code text, vision_calls int not null, feedback_calls int not null);
create table chaos_calls (
  instance int not null, at timestamptz not null, job_id uuid not null, submission_id uuid not null,
  lease_key uuid not null, retry_count int not null, phase text not null);
create index on chaos_calls (job_id);
create table chaos_faults (kind text not null, instance int, started_at timestamptz not null, ended_at timestamptz not null);
