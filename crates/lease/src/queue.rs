//! Leasing, heartbeats and fenced writes.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use deadpool_postgres::{ClientWrapper, Object, Pool, Transaction};
use serde_json::Value;
use uuid::Uuid;

use crate::error::Error;

/// Which table holds the jobs. The table must have the columns of
/// `learning_submission_jobs`: `id uuid`, `payload jsonb`, `status text`,
/// `retry_count int`, `visible_at`, `lease_key uuid`, `leased_until`,
/// `error_code text`, `created_at`, `updated_at`, plus a uuid reference column.
#[derive(Clone, Debug)]
pub struct QueueConfig {
    table: String,
    reference_column: String,
    statement_timeout: Option<Duration>,
}

impl QueueConfig {
    /// `table` may be schema-qualified (`public.learning_submission_jobs`);
    /// `reference_column` is the uuid column handed back with each job
    /// (`submission_id`).
    pub fn new(table: &str, reference_column: &str) -> Result<QueueConfig, Error> {
        if table.split('.').count() > 2 {
            return Err(Error::InvalidName {
                what: "table",
                name: table.to_owned(),
            });
        }
        let table = table
            .split('.')
            .map(|part| quote_identifier(part, "table"))
            .collect::<Result<Vec<_>, _>>()?
            .join(".");
        let reference_column = quote_identifier(reference_column, "column")?;
        Ok(QueueConfig {
            table,
            reference_column,
            statement_timeout: None,
        })
    }

    /// Bounds every queue operation, the wait for its connection included, to
    /// `timeout`. Without it, a network that silently drops packets stalls a call
    /// until the kernel gives up on the connection (many minutes). A call that
    /// times out fails with [`Error::Timeout`] and its connection is discarded: a
    /// reply may still be owed on it, and whoever got it next would wait for that.
    pub fn with_statement_timeout(mut self, timeout: Duration) -> QueueConfig {
        self.statement_timeout = Some(timeout);
        self
    }
}

/// Quotes a plain identifier; anything else is rejected rather than escaped.
pub(crate) fn quote_identifier(name: &str, what: &'static str) -> Result<String, Error> {
    let mut chars = name.chars();
    let plain = chars
        .next()
        .is_some_and(|first| first.is_ascii_lowercase() || first == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 63;
    if !plain {
        return Err(Error::InvalidName {
            what,
            name: name.to_owned(),
        });
    }
    Ok(format!("\"{name}\""))
}

/// A job this worker holds a lease on.
#[derive(Clone, Debug, PartialEq)]
pub struct LeasedJob {
    /// The job's id.
    pub id: Uuid,
    /// The fencing key: every write for this job must carry it.
    pub lease_key: Uuid,
    /// Transient failures so far.
    pub retry_count: i32,
    /// The job's payload as leased.
    pub payload: Value,
    /// The reference column's value (the submission).
    pub reference: Uuid,
}

impl LeasedJob {
    /// What a fenced write needs of the job.
    pub fn key(&self) -> JobKey {
        JobKey {
            id: self.id,
            lease_key: self.lease_key,
        }
    }
}

/// A job's id with the lease key its writes must carry: what the batched writes
/// ([`Queue::merge_payloads`], [`Queue::complete_many_with`]) take per job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct JobKey {
    /// The job's id.
    pub id: Uuid,
    /// Its lease key.
    pub lease_key: Uuid,
}

/// The queue: a pool and the statements for one table.
#[derive(Clone)]
pub struct Queue {
    pool: Pool,
    sql: Arc<Statements>,
    statement_timeout: Option<Duration>,
}

struct Statements {
    lease: String,
    heartbeat: String,
    fence: String,
    complete: String,
    retry: String,
    fail: String,
    release: String,
    merge_payload: String,
    merge_payloads: String,
    complete_many: String,
    /// Followed by the caller's call expression and `from done`.
    complete_many_with: String,
    /// Followed by the caller's call expression and `from done`.
    complete_with: String,
}

impl Statements {
    fn new(config: &QueueConfig) -> Statements {
        let QueueConfig {
            table,
            reference_column,
            ..
        } = config;
        let fenced = "where id = $1 and lease_key = $2 and status = 'leased'";
        Statements {
            // One statement: pick visible queued jobs or expired leases in order, skip
            // rows another transaction is leasing, and lease them with fresh keys.
            // Each kind is its own scan of the platform's (status, visible_at) index,
            // ordered by visible_at alone so that the scan stops after `limit` rows:
            // a tie-break on created_at is not in that index and would read and sort
            // every visible job per lease. One scan with `or` across both kinds would
            // do the same. Only the few candidates are then ordered with the tie-break.
            lease: format!(
                "with queued as ( \
                   select id, visible_at, created_at from {table} \
                   where status = 'queued' and visible_at <= coalesce($2, now()) \
                   order by visible_at limit $1 \
                   for update skip locked), \
                 expired as ( \
                   select id, visible_at, created_at from {table} \
                   where status = 'leased' and leased_until <= coalesce($2, now()) \
                   order by visible_at limit $1 \
                   for update skip locked), \
                 candidates as ( \
                   select id from (select * from queued union all select * from expired) both_kinds \
                   order by visible_at, created_at limit $1), \
                 leased as ( \
                   update {table} j \
                      set status = 'leased', lease_key = gen_random_uuid(), \
                          leased_until = coalesce($2, now()) + $3 * interval '1 second', updated_at = now() \
                     from candidates c where j.id = c.id \
                   returning j.id, j.lease_key, j.retry_count, j.payload, j.{reference_column}, j.visible_at, j.created_at) \
                 select id, lease_key, retry_count, payload, {reference_column} from leased \
                 order by visible_at, created_at"
            ),
            heartbeat: format!(
                "update {table} set leased_until = coalesce($2, now()) + $3 * interval '1 second', updated_at = now() \
                 where lease_key = any($1) and status = 'leased' returning lease_key"
            ),
            fence: format!("select 1 from {table} {fenced} for update"),
            complete: format!("delete from {table} {fenced}"),
            retry: format!(
                "update {table} set status = 'queued', lease_key = null, leased_until = null, \
                        retry_count = retry_count + 1, \
                        visible_at = coalesce($4, now()) + $3 * interval '1 second', updated_at = now() {fenced}"
            ),
            fail: format!(
                "update {table} set status = 'failed', error_code = $3, lease_key = null, leased_until = null, \
                        updated_at = now() {fenced}"
            ),
            release: format!(
                "update {table} set status = 'queued', lease_key = null, leased_until = null, \
                        visible_at = now(), updated_at = now() {fenced}"
            ),
            merge_payload: format!(
                "update {table} set payload = payload || $3, updated_at = now() {fenced}"
            ),
            merge_payloads: format!(
                "update {table} j set payload = j.payload || batch.patch, updated_at = now() \
                 from unnest($1::uuid[], $2::uuid[], $3::jsonb[]) as batch(id, lease_key, patch) \
                 where j.id = batch.id and j.lease_key = batch.lease_key and j.status = 'leased' \
                 returning j.id"
            ),
            // Batched acks: one statement deletes every job whose key still matches.
            complete_many: format!(
                "delete from {table} j using unnest($1::uuid[], $2::uuid[]) as done(id, lease_key) \
                 where j.id = done.id and j.lease_key = done.lease_key and j.status = 'leased' \
                 returning j.id"
            ),
            complete_many_with: format!(
                "with done as (delete from {table} j \
                   using unnest($1::uuid[], $2::uuid[]) with ordinality as batch(id, lease_key, n) \
                   where j.id = batch.id and j.lease_key = batch.lease_key and j.status = 'leased' \
                   returning j.id, j.{reference_column} as reference, batch.n) \
                 select done.id, "
            ),
            complete_with: format!(
                "with done as (delete from {table} {fenced} returning {reference_column} as reference) select "
            ),
        }
    }
}

impl Queue {
    /// A queue on `pool` for the configured table.
    pub fn new(pool: Pool, config: &QueueConfig) -> Queue {
        Queue {
            pool,
            sql: Arc::new(Statements::new(config)),
            statement_timeout: config.statement_timeout,
        }
    }

    /// The pool, for the caller's own reads.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Runs `work` on a connection from the pool within the statement timeout (see
    /// [`QueueConfig::with_statement_timeout`]); the queue's own operations all go
    /// through here, and callers' statements (their reads, fenced writes) may too.
    pub async fn bounded<T>(
        &self,
        work: impl AsyncFnOnce(&mut Object) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let Some(timeout) = self.statement_timeout else {
            let mut client = self.pool.get().await?;
            return work(&mut client).await;
        };
        let deadline = tokio::time::Instant::now() + timeout;
        let mut client = tokio::time::timeout_at(deadline, self.pool.get())
            .await
            .map_err(|_| Error::Timeout(timeout))??;
        match tokio::time::timeout_at(deadline, work(&mut client)).await {
            Ok(result) => result,
            Err(_) => {
                // Never back into the pool: its connection may still owe a reply.
                drop(Object::take(client));
                Err(Error::Timeout(timeout))
            }
        }
    }

    /// Leases up to `limit` jobs for `lease`, in one statement, by the database clock
    /// (or `now`, for tests that move time instead of waiting).
    pub async fn lease(
        &self,
        limit: usize,
        lease: Duration,
        now: Option<SystemTime>,
    ) -> Result<Vec<LeasedJob>, Error> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .bounded(async |client| {
                let statement = client.prepare_cached(&self.sql.lease).await?;
                Ok(client
                    .query(&statement, &[&limit, &now, &lease.as_secs_f64()])
                    .await?)
            })
            .await?;
        Ok(rows
            .iter()
            .map(|row| LeasedJob {
                id: row.get(0),
                lease_key: row.get(1),
                retry_count: row.get(2),
                payload: row.get(3),
                reference: row.get(4),
            })
            .collect())
    }

    /// Extends every lease in `keys` by `lease` in one statement; returns the keys
    /// still held. A key missing from the result is a lost lease.
    pub async fn heartbeat(
        &self,
        keys: &[Uuid],
        lease: Duration,
        now: Option<SystemTime>,
    ) -> Result<HashSet<Uuid>, Error> {
        if keys.is_empty() {
            return Ok(HashSet::new());
        }
        let rows = self
            .bounded(async |client| {
                let statement = client.prepare_cached(&self.sql.heartbeat).await?;
                Ok(client
                    .query(&statement, &[&keys, &now, &lease.as_secs_f64()])
                    .await?)
            })
            .await?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    /// Opens a transaction that holds the job's row lock if, and only if, the lease
    /// is still ours. `None`: the lease is lost and nothing may be written.
    pub async fn fence<'c>(
        &self,
        client: &'c mut ClientWrapper,
        job: &LeasedJob,
    ) -> Result<Option<Fence<'c>>, Error> {
        let transaction = client.transaction().await?;
        let statement = transaction.prepare_cached(&self.sql.fence).await?;
        let held = transaction
            .query_opt(&statement, &[&job.id, &job.lease_key])
            .await?
            .is_some();
        if !held {
            transaction.rollback().await?;
            return Ok(None);
        }
        Ok(Some(Fence {
            transaction,
            job_id: job.id,
            lease_key: job.lease_key,
            sql: Arc::clone(&self.sql),
        }))
    }

    /// Merges `patch` into the job's payload, fenced; `false` if the lease is lost.
    pub async fn merge_payload(&self, job: &LeasedJob, patch: &Value) -> Result<bool, Error> {
        self.bounded(async |client| {
            let statement = client.prepare_cached(&self.sql.merge_payload).await?;
            Ok(client
                .execute(&statement, &[&job.id, &job.lease_key, patch])
                .await?
                == 1)
        })
        .await
    }

    /// Completes (deletes) many jobs in one fenced statement, for jobs that have
    /// nothing else to write; returns the ids it completed. A job whose lease was
    /// lost is left alone and missing from the answer.
    pub async fn complete_many(&self, jobs: &[LeasedJob]) -> Result<Vec<Uuid>, Error> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Uuid> = jobs.iter().map(|job| job.id).collect();
        let keys: Vec<Uuid> = jobs.iter().map(|job| job.lease_key).collect();
        let rows = self
            .bounded(async |client| {
                let statement = client.prepare_cached(&self.sql.complete_many).await?;
                Ok(client.query(&statement, &[&ids, &keys]).await?)
            })
            .await?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    /// Merges each job's patch into its payload, all in one fenced statement (one
    /// transaction, one commit); returns the ids whose lease was still held. A job
    /// whose lease was lost is left alone and missing from the answer.
    pub async fn merge_payloads(
        &self,
        patches: &[(JobKey, Value)],
    ) -> Result<HashSet<Uuid>, Error> {
        if patches.is_empty() {
            return Ok(HashSet::new());
        }
        let ids: Vec<Uuid> = patches.iter().map(|(job, _)| job.id).collect();
        let keys: Vec<Uuid> = patches.iter().map(|(job, _)| job.lease_key).collect();
        let values: Vec<&Value> = patches.iter().map(|(_, patch)| patch).collect();
        let rows = self
            .bounded(async |client| {
                let statement = client.prepare_cached(&self.sql.merge_payloads).await?;
                Ok(client.query(&statement, &[&ids, &keys, &values]).await?)
            })
            .await?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    /// [`complete_with`](Self::complete_with) for many jobs in one statement: one
    /// transaction, one commit, however many jobs. `call` is evaluated once per
    /// job whose lease is still held, over `done.reference` and `done.n`, the job's
    /// 1-based position in `jobs`; each parameter in `columns` (`$3…`) is an array
    /// with one element per job, so `call` picks its own with `($3::text[])[done.n]`.
    /// Returns the ids completed; a job whose lease was lost is missing.
    ///
    /// If `call` raises for any job, the statement rolls back for all of them and
    /// the error is returned: the caller retries those jobs one by one (with
    /// [`complete_with`](Self::complete_with)) so that only the job that raised
    /// keeps its error.
    pub async fn complete_many_with(
        &self,
        jobs: &[JobKey],
        call: &str,
        columns: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<HashSet<Uuid>, Error> {
        if jobs.is_empty() {
            return Ok(HashSet::new());
        }
        let sql = self.complete_many_sql(call);
        let ids: Vec<Uuid> = jobs.iter().map(|job| job.id).collect();
        let keys: Vec<Uuid> = jobs.iter().map(|job| job.lease_key).collect();
        let mut all: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&ids, &keys];
        all.extend_from_slice(columns);
        let rows = self
            .bounded(async |client| {
                let statement = client.prepare_cached(&sql).await?;
                Ok(client.query(&statement, &all).await?)
            })
            .await?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    /// The statement [`complete_many_with`](Self::complete_many_with) runs, for a
    /// caller that sends it in a transaction of its own beside other statements
    /// (reading back what `call` did, say). Its parameters are the same: `$1` the
    /// jobs' ids, `$2` their lease keys, `$3…` the caller's arrays; it returns the
    /// ids completed.
    pub fn complete_many_sql(&self, call: &str) -> String {
        format!("{}{call} from done", self.sql.complete_many_with)
    }

    /// Completes (deletes) the job and, in the same statement, evaluates `call` —
    /// an SQL expression over `done.reference` (the job's reference column) and
    /// the parameters `$3…` given in `params` — once, only if the lease was still
    /// ours. One statement is one transaction and one round trip: the row is
    /// locked by id and key, the call runs, the job is gone, or nothing happened.
    /// `false`: the lease was lost, nothing was called or deleted. If `call`
    /// raises, the job is not deleted and the error is returned.
    ///
    /// `call` is SQL written by the caller (e.g. `record_result(done.reference,
    /// $3)`), never data: data goes in `params`.
    pub async fn complete_with(
        &self,
        job: &LeasedJob,
        call: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<bool, Error> {
        let sql = format!("{}{call} from done", self.sql.complete_with);
        let mut all: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
            vec![&job.id, &job.lease_key];
        all.extend_from_slice(params);
        self.bounded(async |client| {
            let statement = client.prepare_cached(&sql).await?;
            Ok(client.query(&statement, &all).await?.len() == 1)
        })
        .await
    }

    /// Puts the job back, fenced and in its own transaction; `false` if the lease
    /// was already lost.
    pub async fn release(&self, job: &LeasedJob) -> Result<bool, Error> {
        self.bounded(async |client| {
            let statement = client.prepare_cached(&self.sql.release).await?;
            Ok(client
                .execute(&statement, &[&job.id, &job.lease_key])
                .await?
                == 1)
        })
        .await
    }
}

/// A transaction holding the row lock of a job whose lease is ours. The caller adds
/// its own writes through [`transaction`](Fence::transaction), then ends the job
/// with one of the consuming methods, which write the job row and commit. Dropping
/// a fence rolls everything back.
pub struct Fence<'c> {
    transaction: Transaction<'c>,
    job_id: Uuid,
    lease_key: Uuid,
    sql: Arc<Statements>,
}

impl<'c> Fence<'c> {
    /// The transaction, for the caller's writes that must commit with the job's.
    pub fn transaction(&self) -> &Transaction<'c> {
        &self.transaction
    }

    /// Deletes the job (done) and commits.
    pub async fn complete(self) -> Result<(), Error> {
        self.finish(|sql| &sql.complete, &[]).await
    }

    /// Requeues the job `delay` from now with `retry_count + 1`, and commits.
    pub async fn retry(self, delay: Duration, now: Option<SystemTime>) -> Result<(), Error> {
        let delay = delay.as_secs_f64();
        self.finish(|sql| &sql.retry, &[&delay, &now]).await
    }

    /// Marks the job failed with `error_code`, and commits.
    pub async fn fail(self, error_code: &str) -> Result<(), Error> {
        self.finish(|sql| &sql.fail, &[&error_code]).await
    }

    /// Puts the job back in the queue, visible now, `retry_count` unchanged; commits.
    pub async fn release(self) -> Result<(), Error> {
        self.finish(|sql| &sql.release, &[]).await
    }

    async fn finish(
        self,
        pick: fn(&Statements) -> &String,
        extra: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<(), Error> {
        let mut parameters: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
            vec![&self.job_id, &self.lease_key];
        parameters.extend_from_slice(extra);
        let statement = self.transaction.prepare_cached(pick(&self.sql)).await?;
        let touched = self.transaction.execute(&statement, &parameters).await?;
        // The row lock taken by `fence` makes losing the row here impossible.
        debug_assert_eq!(touched, 1);
        self.transaction.commit().await?;
        Ok(())
    }
}
