//! `Cancellation`: waiting, callbacks, unsubscribing.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use dump_runner::Cancellation;

#[test]
fn an_unbounded_wait_ends_on_cancel() {
    let cancellation = Cancellation::new();
    let waiter = {
        let cancellation = cancellation.clone();
        std::thread::spawn(move || cancellation.wait_timeout(Duration::MAX))
    };
    cancellation.cancel();
    assert!(waiter.join().unwrap());
}

#[test]
fn a_bounded_wait_times_out_uncancelled() {
    assert!(!Cancellation::new().wait_timeout(Duration::from_millis(10)));
}

#[test]
fn callbacks_run_once_unless_unsubscribed() {
    let cancellation = Cancellation::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let _kept = cancellation.on_cancel(move || {
        counted.fetch_add(1, Ordering::SeqCst);
    });
    let dropped = cancellation.on_cancel(|| panic!("an unsubscribed callback ran"));
    drop(dropped);

    cancellation.cancel();
    cancellation.cancel();

    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let late = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&late);
    let _late = cancellation.on_cancel(move || {
        counted.fetch_add(1, Ordering::SeqCst);
    });
    assert_eq!(
        late.load(Ordering::SeqCst),
        1,
        "registering after cancel runs at once"
    );
}
