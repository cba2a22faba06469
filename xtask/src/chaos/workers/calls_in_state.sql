-- Every adapter call with the state of its job at the call's start (the last
-- lease-log row before it): `foreign_live` when another key held a live lease,
-- `own_live` when the call's own lease was live.
calls_in_state as (
  select c.*,
  coalesce(st.status = 'leased' and st.lease_key <> c.lease_key and st.leased_until > c.at, false)
  as foreign_live,
  coalesce(st.status = 'leased' and st.lease_key = c.lease_key and st.leased_until > c.at, false)
  as own_live
  from chaos_calls c
  left join lateral (select l.status, l.lease_key, l.leased_until from chaos_job_log l
  where l.job_id = c.job_id and l.at <= c.at order by l.seq desc limit 1) st on true)
