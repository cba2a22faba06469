//! Group commit: many jobs' statements in one round trip and one commit.
//!
//! Every job needs the same few statements — read its submission, cache its OCR,
//! write its result — and on a durable PostgreSQL each commit waits for the disk
//! (`fdatasync`). Sent one job at a time, those waits and round trips, not the
//! work, bound the worker. A [`Batcher`] collects the requests of all running jobs
//! and serves them together: while one batch is in the database, the next one
//! gathers. No request ever waits for a timer: an idle worker's only request is
//! served at once, alone; a busy worker's requests share a round trip because they
//! arrived while the previous one was out.
//!
//! ```text
//!   job 1 ─┐                       ┌─► job 1: done
//!   job 2 ─┼─► [1 2 3] one statement, one commit ─┼─► job 2: lease lost
//!   job 3 ─┘                       └─► job 3: done
//!   job 4 ─┐ (arrived while [1 2 3] was out)
//!   job 5 ─┴─► [4 5] …
//! ```
//!
//! Batching changes no guarantee. Each job's write is still fenced by its own lease
//! key (the batch statement joins on id *and* key, so a lost lease writes nothing
//! and only that job is told so), and a job learns that its write is durable only
//! after the batch committed. If a batch fails — a helper raised for one job, say —
//! it rolled back as a whole, and every job in it is told to run its statement
//! alone ([`Batched::Alone`]): then only the job that raised sees its error.

use std::pin::Pin;
use std::sync::OnceLock;
use std::task::Poll;

use tokio::sync::{mpsc, oneshot};

/// The most requests served by one statement.
pub(crate) const BATCH_LIMIT: usize = 64;

/// A batched request's answer.
#[derive(Debug)]
pub(crate) enum Batched<Request, Answer> {
    /// Served with the batch.
    Done(Answer),
    /// The request was the batch and failed on its own.
    Failed(lease::Error),
    /// The batch failed as a whole: run this request alone.
    Alone(Request),
    /// The batch's task panicked: whether the request was served is unknown.
    Lost,
}

type Pending<Request, Answer> = (Request, oneshot::Sender<Batched<Request, Answer>>);

/// How a batch is served: its answers in the order of its requests, or one error
/// for all of them.
pub(crate) type Served<'a, Answer> =
    Pin<Box<dyn Future<Output = Result<Vec<Answer>, lease::Error>> + Send + 'a>>;

/// Serves requests in batches of at most [`BATCH_LIMIT`], one batch at a time,
/// on a task of its own, started by the first request (so that building one needs
/// no runtime) and ended when the batcher is dropped.
pub(crate) struct Batcher<Request, Answer> {
    sender: OnceLock<mpsc::UnboundedSender<Pending<Request, Answer>>>,
}

impl<Request, Answer> Default for Batcher<Request, Answer> {
    fn default() -> Self {
        Batcher {
            sender: OnceLock::new(),
        }
    }
}

impl<Request: Send + 'static, Answer: Send + 'static> Batcher<Request, Answer> {
    /// Queues `request` and waits for its answer. `serve` runs one batch; the
    /// first call's `serve` is the one every batch uses.
    pub(crate) async fn submit<Serve>(
        &self,
        request: Request,
        serve: Serve,
    ) -> Batched<Request, Answer>
    where
        Serve: Fn(&[Request]) -> Served<'_, Answer> + Send + 'static,
    {
        let sender = self.sender.get_or_init(|| {
            let (sender, receiver) = mpsc::unbounded_channel();
            tokio::spawn(serve_batches(receiver, serve));
            sender
        });
        let (answer, answered) = oneshot::channel();
        if let Err(mpsc::error::SendError((request, _))) = sender.send((request, answer)) {
            return Batched::Alone(request);
        }
        // Only a batch that panicked drops its answers unsent.
        answered.await.unwrap_or(Batched::Lost)
    }
}

async fn serve_batches<Request, Answer, Serve>(
    mut receiver: mpsc::UnboundedReceiver<Pending<Request, Answer>>,
    serve: Serve,
) where
    Serve: Fn(&[Request]) -> Served<'_, Answer>,
{
    let mut pending = Vec::with_capacity(BATCH_LIMIT);
    while receiver.recv_many(&mut pending, BATCH_LIMIT).await > 0 {
        let (requests, answers): (Vec<Request>, Vec<_>) = pending.drain(..).unzip();
        let served = serve(&requests).await;
        match served {
            Ok(values) => {
                debug_assert_eq!(values.len(), answers.len());
                for (answer, value) in answers.into_iter().zip(values) {
                    let _ = answer.send(Batched::Done(value));
                }
            }
            Err(error) if answers.len() == 1 => {
                if let Some(answer) = answers.into_iter().next() {
                    let _ = answer.send(Batched::Failed(error));
                }
            }
            Err(error) => {
                tracing::debug!(batch = answers.len(), error = %error, "batch failed; its requests run alone");
                for (answer, request) in answers.into_iter().zip(requests) {
                    let _ = answer.send(Batched::Alone(request));
                }
            }
        }
    }
}

/// Runs `futures` to completion, first polling each in the order given: requests
/// on one tokio-postgres connection go out in the order they are first polled, so
/// this pipelines them (`begin`, statements, `commit`) in one round trip.
pub(crate) async fn in_order<'a, T>(
    mut futures: Vec<Pin<Box<dyn Future<Output = T> + Send + 'a>>>,
) -> Vec<T> {
    let mut outputs: Vec<Option<T>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|context| {
        let mut unfinished = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(context) {
                    Poll::Ready(value) => *output = Some(value),
                    Poll::Pending => unfinished = true,
                }
            }
        }
        if unfinished {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;

    /// Serves numbers by doubling them, logging each batch; fails any batch
    /// holding a negative number.
    fn doubling(
        log: &Arc<Mutex<Vec<Vec<i32>>>>,
    ) -> impl Fn(&[i32]) -> Served<'_, i32> + Send + 'static {
        let log = Arc::clone(log);
        move |batch| {
            log.lock().unwrap().push(batch.to_vec());
            let answer = if batch.iter().any(|n| *n < 0) {
                Err(lease::Error::Timeout(Duration::from_secs(1)))
            } else {
                Ok(batch.iter().map(|n| n * 2).collect())
            };
            Box::pin(async move { answer })
        }
    }

    fn done(answer: Batched<i32, i32>) -> Option<i32> {
        match answer {
            Batched::Done(value) => Some(value),
            _ => None,
        }
    }

    #[tokio::test]
    async fn requests_that_arrive_together_share_one_batch_and_keep_their_answers() {
        let log = Arc::default();
        let batcher = Batcher::default();

        let (a, b, c) = tokio::join!(
            batcher.submit(1, doubling(&log)),
            batcher.submit(2, doubling(&log)),
            batcher.submit(3, doubling(&log)),
        );
        let alone = batcher.submit(4, doubling(&log)).await;

        assert_eq!((done(a), done(b), done(c)), (Some(2), Some(4), Some(6)));
        assert_eq!(done(alone), Some(8));
        assert_eq!(
            *log.lock().unwrap(),
            [vec![1, 2, 3], vec![4]],
            "one batch while the first was out, then one alone"
        );
    }

    #[tokio::test]
    async fn a_failed_batch_hands_each_request_back_and_a_failed_single_gets_the_error() {
        let log = Arc::default();
        let batcher = Batcher::default();

        let (a, b) = tokio::join!(
            batcher.submit(5, doubling(&log)),
            batcher.submit(-1, doubling(&log))
        );
        let single = batcher.submit(-2, doubling(&log)).await;

        assert!(matches!(a, Batched::Alone(5)), "{a:?}");
        assert!(matches!(b, Batched::Alone(-1)), "{b:?}");
        assert!(
            matches!(single, Batched::Failed(lease::Error::Timeout(_))),
            "{single:?}"
        );
    }

    #[tokio::test]
    async fn a_batch_holds_at_most_the_limit() {
        let log = Arc::default();
        let batcher = Batcher::default();
        let requests = (0..BATCH_LIMIT as i32 + 1).map(|n| batcher.submit(n, doubling(&log)));

        let answers = futures_join_all(requests).await;

        assert!(
            answers
                .into_iter()
                .enumerate()
                .all(|(n, answer)| done(answer) == Some(2 * n as i32))
        );
        let sizes: Vec<usize> = log.lock().unwrap().iter().map(Vec::len).collect();
        assert_eq!(sizes, [BATCH_LIMIT, 1]);
    }

    #[tokio::test]
    async fn in_order_polls_every_future_first_in_the_order_given() {
        let first_polls = Arc::new(Mutex::new(Vec::new()));
        let futures: Vec<Pin<Box<dyn Future<Output = usize> + Send>>> = (0..5_usize)
            .rev()
            .map(|n| {
                let first_polls = Arc::clone(&first_polls);
                Box::pin(async move {
                    first_polls.lock().unwrap().push(n);
                    tokio::task::yield_now().await;
                    n
                }) as Pin<Box<dyn Future<Output = usize> + Send>>
            })
            .collect();

        let outputs = in_order(futures).await;

        assert_eq!(outputs, [4, 3, 2, 1, 0]);
        assert_eq!(*first_polls.lock().unwrap(), [4, 3, 2, 1, 0]);
    }

    async fn futures_join_all<T>(
        futures: impl Iterator<Item = impl Future<Output = T> + Send>,
    ) -> Vec<T> {
        in_order(
            futures
                .map(|future| Box::pin(future) as Pin<Box<dyn Future<Output = T> + Send>>)
                .collect(),
        )
        .await
    }
}
