-- Every lease a job ever had: when it was granted, when and how it ended —
-- `done` (the holder recorded a result: deleted, failed, or requeued with the
-- retry count raised), `lost` (released unchanged, or taken over after it
-- expired) or `open`.
leases as (
  select k.lease_key, k.granted_at, e.at as ended_at,
  coalesce(e.op || ' ' || coalesce(e.status, '') || ' retry ' || coalesce(e.retry_count, -1), 'open') as ending_state,
  case when e.seq is null then 'open'
  when e.op = 'delete' or e.status = 'failed'
  or (e.status = 'queued' and e.retry_count > k.retry_count) then 'done'
  else 'lost' end as ending
  from (select lease_key, job_id, min(at) as granted_at, min(seq) as first_seq, max(retry_count) as retry_count
  from chaos_job_log where lease_key is not null group by lease_key, job_id) k
  left join lateral (select e.seq, e.op, e.status, e.retry_count, e.at from chaos_job_log e
  where e.job_id = k.job_id and e.seq > k.first_seq
  and (e.op = 'delete' or e.lease_key is distinct from k.lease_key)
  order by e.seq limit 1) e on true)
