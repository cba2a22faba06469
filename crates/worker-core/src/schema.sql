-- Database objects the learning worker relies on (docs/reference/schema.md).
--
-- The platform owns this schema; the worker ships it so that tests, `cargo xtask e2e`
-- and a fresh deployment can create it. Every statement is idempotent: running the
-- whole file again changes nothing. `worker_core::schema::apply` runs it in one
-- transaction under an advisory lock, so concurrent appliers serialise.

do $$
begin
    if not exists (select from pg_roles where rolname = 'gustav_worker') then
        -- LOGIN and the password are set out of band by the deployment.
        create role gustav_worker nologin nosuperuser nobypassrls;
    end if;
end
$$;

create table if not exists public.courses (
    id uuid primary key default gen_random_uuid(),
    title text
);

create table if not exists public.unit_tasks (
    id uuid primary key default gen_random_uuid(),
    course_id uuid,
    instruction_md text,
    teacher_context_md text,
    model_solution_md text,
    criteria jsonb
);

create table if not exists public.learning_submissions (
    id uuid primary key default gen_random_uuid(),
    course_id uuid not null references public.courses,
    task_id uuid not null references public.unit_tasks,
    student_sub text not null,
    kind text not null check (kind in ('text', 'image', 'file')),
    text_body text,
    storage_key text,
    mime_type text,
    size_bytes integer,
    sha256 text,
    attempt_nr integer not null,
    analysis_status text not null default 'pending'
        check (analysis_status in ('pending', 'extracted', 'completed', 'failed')),
    analysis_json jsonb,
    feedback_md text,
    error_code text
        check (error_code in ('vision_retrying', 'feedback_retrying', 'vision_failed', 'feedback_failed')),
    vision_attempts integer not null default 0,
    vision_last_error text,
    vision_last_attempt_at timestamptz,
    feedback_last_error text,
    feedback_last_attempt_at timestamptz,
    internal_metadata jsonb,
    created_at timestamptz not null default now(),
    completed_at timestamptz
);

alter table public.learning_submissions enable row level security;

drop policy if exists learning_submissions_own_student on public.learning_submissions;
create policy learning_submissions_own_student on public.learning_submissions
    for select
    using (student_sub = current_setting('app.current_sub', true));

create table if not exists public.learning_submission_jobs (
    id uuid primary key default gen_random_uuid(),
    submission_id uuid not null references public.learning_submissions on delete cascade,
    payload jsonb not null,
    status text not null default 'queued' check (status in ('queued', 'leased', 'failed')),
    retry_count integer not null default 0,
    visible_at timestamptz not null default now(),
    lease_key uuid,
    leased_until timestamptz,
    error_code text,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);

-- The lease index: (status, visible_at) as the contract has it, plus created_at,
-- the tie-break the lease statement orders by. Leasing is then an index scan that
-- stops after the batch. On the contract's two-column index alone every lease sorts
-- the whole backlog (6-7x slower), so this index has a name of its own and is
-- created even where the platform's (status, visible_at) index already exists.
-- Earlier versions of this script created it under the contract index's name; such
-- an index (exactly these three columns) is renamed, never duplicated.
-- On a large existing table, create it first without blocking writes:
--   create index concurrently learning_submission_jobs_lease_idx
--     on public.learning_submission_jobs (status, visible_at, created_at);
do $$
begin
  if to_regclass('public.learning_submission_jobs_lease_idx') is null
     and exists (
       select 1 from pg_index i
       where i.indexrelid = to_regclass('public.learning_submission_jobs_status_visible_at_idx')
         and i.indnatts = 3
         and (i.indkey::int2[])[0:2] = (
           select array_agg(a.attnum order by o.n)::int2[]
           from unnest(array['status', 'visible_at', 'created_at']) with ordinality as o(name, n)
           join pg_attribute a on a.attrelid = 'public.learning_submission_jobs'::regclass
                              and a.attname = o.name))
  then
    alter index public.learning_submission_jobs_status_visible_at_idx
      rename to learning_submission_jobs_lease_idx;
  end if;
end $$;
create index if not exists learning_submission_jobs_lease_idx
    on public.learning_submission_jobs (status, visible_at, created_at);

-- One notification per insert statement, not per row: a bulk enqueue wakes idle
-- workers once, and workers never read the payload anyway.
create or replace function public.learning_submission_jobs_notify()
returns trigger
language plpgsql
as $$
begin
    perform pg_notify('learning_submission_jobs', '');
    return null;
end
$$;

drop trigger if exists learning_submission_jobs_notify on public.learning_submission_jobs;
create trigger learning_submission_jobs_notify
    after insert on public.learning_submission_jobs
    for each statement
    execute function public.learning_submission_jobs_notify();

-- The three helpers below are the only way the worker changes a submission. Each
-- raises (SQLSTATE 55000, object_not_in_prerequisite_state) when the submission is
-- not in a state it may leave, so a result can never be written twice.

create or replace function public.learning_worker_update_completed(
    p_submission_id uuid,
    p_text_body text,
    p_feedback_md text,
    p_analysis_json jsonb
)
returns void
language plpgsql
security definer
set search_path = public, pg_temp
as $$
begin
    update public.learning_submissions
       set analysis_status = 'completed',
           text_body = p_text_body,
           feedback_md = p_feedback_md,
           analysis_json = p_analysis_json,
           completed_at = now(),
           error_code = null
     where id = p_submission_id
       and analysis_status in ('pending', 'extracted');
    if not found then
        raise exception 'submission % is not pending or extracted', p_submission_id
            using errcode = '55000';
    end if;
end
$$;

create or replace function public.learning_worker_update_failed(
    p_submission_id uuid,
    p_error_code text,
    p_last_error text
)
returns void
language plpgsql
security definer
set search_path = public, pg_temp
as $$
begin
    if p_error_code is null or p_error_code not in ('vision_failed', 'feedback_failed') then
        raise exception 'error code must be vision_failed or feedback_failed'
            using errcode = '22023';
    end if;
    update public.learning_submissions
       set analysis_status = 'failed',
           error_code = p_error_code,
           vision_last_error = case when p_error_code = 'vision_failed'
                                    then left(p_last_error, 1024) else vision_last_error end,
           feedback_last_error = case when p_error_code = 'feedback_failed'
                                      then left(p_last_error, 1024) else feedback_last_error end
     where id = p_submission_id
       and analysis_status in ('pending', 'extracted');
    if not found then
        raise exception 'submission % is not pending or extracted', p_submission_id
            using errcode = '55000';
    end if;
end
$$;

create or replace function public.learning_worker_mark_retry(
    p_submission_id uuid,
    p_phase text,
    p_message text,
    p_attempted_at timestamptz
)
returns void
language plpgsql
security definer
set search_path = public, pg_temp
as $$
begin
    if p_phase is null or p_phase not in ('vision', 'feedback') then
        raise exception 'phase must be vision or feedback'
            using errcode = '22023';
    end if;
    update public.learning_submissions
       set error_code = p_phase || '_retrying',
           vision_attempts = vision_attempts + case when p_phase = 'vision' then 1 else 0 end,
           vision_last_error = case when p_phase = 'vision'
                                    then left(p_message, 1024) else vision_last_error end,
           vision_last_attempt_at = case when p_phase = 'vision'
                                         then p_attempted_at else vision_last_attempt_at end,
           feedback_last_error = case when p_phase = 'feedback'
                                      then left(p_message, 1024) else feedback_last_error end,
           feedback_last_attempt_at = case when p_phase = 'feedback'
                                           then p_attempted_at else feedback_last_attempt_at end
     where id = p_submission_id
       and analysis_status in ('pending', 'extracted');
    if not found then
        raise exception 'submission % is not pending or extracted', p_submission_id
            using errcode = '55000';
    end if;
end
$$;

-- Least privilege for the worker role: exactly what schema.md lists.
revoke all on function public.learning_worker_update_completed(uuid, text, text, jsonb) from public;
revoke all on function public.learning_worker_update_failed(uuid, text, text) from public;
revoke all on function public.learning_worker_mark_retry(uuid, text, text, timestamptz) from public;

grant select on public.learning_submissions, public.unit_tasks to gustav_worker;
grant select, update, delete on public.learning_submission_jobs to gustav_worker;
grant execute on function public.learning_worker_update_completed(uuid, text, text, jsonb) to gustav_worker;
grant execute on function public.learning_worker_update_failed(uuid, text, text) to gustav_worker;
grant execute on function public.learning_worker_mark_retry(uuid, text, text, timestamptz) to gustav_worker;
