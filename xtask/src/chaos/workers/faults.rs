//! The faults: what is injected into which worker or into the database, and the
//! record of when, which the checks match duplicate calls against.

use std::time::SystemTime;

use anyhow::Context as _;
use fixtures::ProxyMode;

use super::{Report, WORKERS, World};
use crate::chaos::{Rng, signal};

/// One roll (see [`World::inject`]) for each kind of fault.
pub(super) const EVERY_FAULT: [usize; 7] = [5, 20, 35, 50, 60, 80, 95];

pub(super) struct FaultRecord {
    pub(super) kind: &'static str,
    /// `None`: every worker (a database restart).
    pub(super) instance: Option<usize>,
    pub(super) started: SystemTime,
    pub(super) ended: SystemTime,
}

impl World<'_> {
    /// Injects the fault that `roll` (0–99) picks, on a random worker slot.
    pub(super) fn inject(
        &mut self,
        roll: usize,
        rng: &mut Rng,
        report: &mut Report,
    ) -> anyhow::Result<()> {
        let slot = rng.below(WORKERS);
        let instance = self
            .workers
            .iter()
            .find(|worker| worker.slot == slot)
            .map(|worker| worker.instance);
        let started = SystemTime::now();
        let kind = match roll {
            0..10 => {
                // A long GC-like pause or a frozen VM: the process wakes up
                // after its leases expired, with its timers all due at once.
                let pid = self
                    .workers
                    .iter()
                    .find(|w| w.slot == slot)
                    .map(|w| w.child.id());
                if let Some(pid) = pid {
                    signal(pid, libc::SIGSTOP);
                    std::thread::sleep(rng.seconds(2.5, 4.0));
                    signal(pid, libc::SIGCONT);
                }
                "sigstop"
            }
            10..30 => {
                let mut worker = self.take_worker(slot);
                signal(worker.child.id(), libc::SIGKILL);
                let _ = worker.child.wait();
                self.spawn(slot)?;
                "sigkill"
            }
            30..45 => {
                let worker = self.take_worker(slot);
                self.stop(worker, report);
                self.spawn(slot)?;
                "sigterm"
            }
            45..57 => {
                self.setup
                    .cluster
                    .restart()
                    .context("cannot restart PostgreSQL")?;
                self.record("pg_restart", None, started);
                return Ok(());
            }
            57..72 => {
                let _ = self.db.poll(&format!(
                    "select count(pg_terminate_backend(pid)) from pg_stat_activity \
                     where application_name = 'chaos-slot-{slot}'"
                ));
                "terminate_backends"
            }
            72..88 => {
                self.proxies[slot].set(ProxyMode::Blackhole);
                std::thread::sleep(rng.seconds(2.5, 4.0));
                self.proxies[slot].set(ProxyMode::Pass);
                "network_blackhole"
            }
            _ => {
                self.proxies[slot].set(ProxyMode::Drop);
                std::thread::sleep(rng.seconds(0.3, 1.0));
                self.proxies[slot].set(ProxyMode::Pass);
                "network_drop"
            }
        };
        self.record(kind, instance, started);
        Ok(())
    }

    fn record(&mut self, kind: &'static str, instance: Option<usize>, started: SystemTime) {
        self.faults.push(FaultRecord {
            kind,
            instance,
            started,
            ended: SystemTime::now(),
        });
    }
}
