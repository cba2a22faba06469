//! `BACKUP_SCHEDULE` from any text, and the next tick from any moment: no panic, no
//! endless search, and a tick is always strictly later than the moment asked about.
#![no_main]

use backup_cron::schedule::Schedule;
use libfuzzer_sys::fuzz_target;
use manifest::UtcTime;

fuzz_target!(|input: (u32, &str)| {
    let (seconds, expression) = input;
    let Ok(schedule) = Schedule::parse(expression) else {
        return;
    };
    let after = UtcTime::from_unix_seconds(i64::from(seconds));
    if let Some(tick) = schedule.next_after(after) {
        assert!(tick.unix_seconds() > after.unix_seconds(), "{expression:?}");
        // Every date recurs within the search window (February 29 within eight
        // years), so a schedule that ticked once ticks again.
        let then = schedule.next_after(tick).expect("a schedule that ticked ticks again");
        assert!(then.unix_seconds() > tick.unix_seconds(), "{expression:?}");
    }
});
