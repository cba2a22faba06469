//! LISTEN/NOTIFY wake-ups on a dedicated connection that reconnects by itself.
//!
//! Notifications only shorten the wait: the worker also polls, so a lost
//! notification costs at most one poll interval. After every (re)connection the
//! listener wakes the worker once, because notifications sent while it was
//! disconnected are gone.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{AsyncMessage, Config, Socket};

use crate::error::Error;
use crate::queue::quote_identifier;

/// Reconnection backoff bounds.
const RECONNECT_MIN: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// A background task listening on one channel.
pub struct Listener {
    wake: Arc<Notify>,
    connected: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Listener {
    /// Starts listening on `channel` over its own connection (not from the pool,
    /// which recycles connections and would drop the LISTEN), made with `tls` as the
    /// pool's are (`tokio_postgres::NoTls` for none).
    pub fn spawn<T>(config: Config, tls: T, channel: &str) -> Result<Listener, Error>
    where
        T: ListenerTls,
    {
        let listen = format!("listen {}", quote_identifier(channel, "channel")?);
        let wake = Arc::new(Notify::new());
        let connected = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(listen_forever(
            config,
            tls,
            listen,
            Arc::clone(&wake),
            Arc::clone(&connected),
        ));
        Ok(Listener {
            wake,
            connected,
            task,
        })
    }

    /// Waits for a notification, at most `timeout`; `true` when woken.
    pub async fn wait(&self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.wake.notified())
            .await
            .is_ok()
    }

    /// Whether the LISTEN connection is currently up.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// A handle that can wake the waiter from elsewhere (a finished job, shutdown).
    pub fn waker(&self) -> Arc<Notify> {
        Arc::clone(&self.wake)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A TLS connector the listener can carry into its background task and use for
/// every reconnection: what `deadpool_postgres::Manager` asks of a pool's
/// connector, so the pool's connector serves here too.
pub trait ListenerTls:
    MakeTlsConnect<
        Socket,
        Stream: Send + Sync + 'static,
        TlsConnect: Send + Sync + TlsConnect<Socket, Future: Send>,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl<T> ListenerTls for T where
    T: MakeTlsConnect<
            Socket,
            Stream: Send + Sync + 'static,
            TlsConnect: Send + Sync + TlsConnect<Socket, Future: Send>,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

async fn listen_forever<T: ListenerTls>(
    config: Config,
    tls: T,
    listen: String,
    wake: Arc<Notify>,
    connected: Arc<AtomicBool>,
) {
    let mut backoff = RECONNECT_MIN;
    loop {
        match listen_once(&config, &tls, &listen, &wake, &connected).await {
            Ok(()) => tracing::warn!("LISTEN connection closed; reconnecting"),
            Err(error) => tracing::warn!(error = %error, "LISTEN connection failed; reconnecting"),
        }
        connected.store(false, Ordering::Relaxed);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(RECONNECT_MAX);
        if connected.load(Ordering::Relaxed) {
            backoff = RECONNECT_MIN;
        }
    }
}

async fn listen_once<T: ListenerTls>(
    config: &Config,
    tls: &T,
    listen: &str,
    wake: &Arc<Notify>,
    connected: &AtomicBool,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(tls.clone()).await?;
    // The task that reads the connection wakes the worker itself: a hop through
    // another task would put one more scheduling delay between a job's commit and
    // its lease.
    let notifications = Arc::clone(wake);
    let driver = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|context| connection.poll_message(context)).await {
                Some(Ok(AsyncMessage::Notification(_))) => notifications.notify_one(),
                Some(Ok(_)) => {}
                Some(Err(error)) => return Err(error),
                None => return Ok(()),
            }
        }
    });
    client.batch_execute(listen).await?;
    connected.store(true, Ordering::Relaxed);
    tracing::debug!("listening for job notifications");
    // Anything sent while we were away is lost: look once.
    wake.notify_one();
    let ended = driver.await.unwrap_or(Ok(()));
    drop(client);
    ended
}
