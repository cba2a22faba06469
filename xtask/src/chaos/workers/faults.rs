//! The faults: what is injected into which worker or into the database, and the
//! record of when, which the checks match duplicate calls against.

use std::time::SystemTime;

use anyhow::Context as _;
use fixtures::ProxyMode;

use super::{Report, STEADY, WORKERS, World};
use crate::chaos::{Rng, signal};

/// One roll (see [`World::inject`]) for each kind of fault.
pub(super) const EVERY_FAULT: [usize; 7] = [5, 20, 35, 50, 60, 80, 95];

/// One roll for each pair of faults injected together (rolls past the single ones):
/// real outages come in pairs.
pub(super) const EVERY_COMPOUND_FAULT: [usize; 4] = [100, 101, 102, 103];

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
        let instance = self.instance(slot);
        let started = SystemTime::now();
        let kind = match roll {
            0..10 => {
                // A long GC-like pause or a frozen VM: the process wakes up
                // after its leases expired, with its timers all due at once.
                let pid = self.pid(slot);
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
                self.restart_database()?;
                self.record("pg_restart", None, started);
                return Ok(());
            }
            57..72 => {
                self.terminate_sessions(slot);
                "terminate_backends"
            }
            72..88 => {
                self.cut(slot, ProxyMode::Blackhole, rng.seconds(2.5, 4.0));
                "network_blackhole"
            }
            88..100 => {
                self.cut(slot, ProxyMode::Drop, rng.seconds(0.3, 1.0));
                "network_drop"
            }
            100 => {
                // The database restarts while one worker's network is a black hole:
                // it comes back to a server that forgot every session it had.
                self.proxies[slot].set(ProxyMode::Blackhole);
                std::thread::sleep(rng.seconds(0.5, 1.5));
                self.restart_database()?;
                std::thread::sleep(rng.seconds(1.0, 2.5));
                self.proxies[slot].set(ProxyMode::Pass);
                self.record("pg_restart+network_blackhole", None, started);
                return Ok(());
            }
            101 => {
                // A frozen worker, its heartbeat due or in flight (the stop lands at a
                // random point of its third-of-a-lease cycle), and a database restart
                // before it wakes: the heartbeat's connection is gone when it resumes.
                let pid = self.pid(slot);
                if let Some(pid) = pid {
                    signal(pid, libc::SIGSTOP);
                    std::thread::sleep(rng.seconds(0.3, 1.0));
                    self.restart_database()?;
                    std::thread::sleep(rng.seconds(2.0, 3.5));
                    signal(pid, libc::SIGCONT);
                }
                self.record("sigstop+pg_restart", None, started);
                return Ok(());
            }
            102 => {
                // The LISTEN connection (and every other of that worker's) is
                // terminated while the worker is partitioned: it learns of it only
                // when the partition heals.
                self.proxies[slot].set(ProxyMode::Blackhole);
                std::thread::sleep(rng.seconds(0.3, 1.0));
                self.terminate_sessions(slot);
                std::thread::sleep(rng.seconds(2.0, 3.5));
                self.proxies[slot].set(ProxyMode::Pass);
                "terminate_backends+network_blackhole"
            }
            _ => {
                // One worker is killed while another shuts down gracefully: the
                // graceful one returns its jobs while the killed one's leases lapse.
                let other = (slot + 1) % WORKERS;
                let stopping = self.take_worker(slot);
                let killed = self.take_worker(other);
                signal(stopping.child.id(), libc::SIGTERM);
                std::thread::sleep(rng.seconds(0.05, 0.5));
                let mut killed_child = killed.child;
                signal(killed_child.id(), libc::SIGKILL);
                let _ = killed_child.wait();
                let (stopping_instance, killed_instance) = (stopping.instance, killed.instance);
                self.wait_stopped(stopping, report);
                self.spawn(slot)?;
                self.spawn(other)?;
                self.record(
                    "sigterm+sigkill_of_another",
                    Some(stopping_instance),
                    started,
                );
                self.record("sigterm+sigkill_of_another", Some(killed_instance), started);
                return Ok(());
            }
        };
        self.record(kind, instance, started);
        Ok(())
    }

    /// Faults that leave the soak run's steady worker running, in turn: its network
    /// black-holed, its connections dropped, its sessions terminated.
    pub(super) fn fault_steady(&mut self, turn: usize, rng: &mut Rng) {
        let instance = self.instance(STEADY);
        let started = SystemTime::now();
        let kind = match turn % 3 {
            0 => {
                self.cut(STEADY, ProxyMode::Blackhole, rng.seconds(2.5, 4.0));
                "network_blackhole"
            }
            1 => {
                self.cut(STEADY, ProxyMode::Drop, rng.seconds(0.3, 1.0));
                "network_drop"
            }
            _ => {
                self.terminate_sessions(STEADY);
                "terminate_backends"
            }
        };
        self.record(kind, instance, started);
    }

    /// The instance number of the worker in `slot`.
    fn instance(&self, slot: usize) -> Option<usize> {
        self.workers
            .iter()
            .find(|worker| worker.slot == slot)
            .map(|worker| worker.instance)
    }

    /// Every session of `slot`'s worker terminated (its LISTEN connection among them).
    fn terminate_sessions(&self, slot: usize) {
        let _ = self.db.poll(&format!(
            "select count(pg_terminate_backend(pid)) from pg_stat_activity \
             where application_name = 'chaos-slot-{slot}'"
        ));
    }

    /// The process id of the worker in `slot`.
    pub(super) fn pid(&self, slot: usize) -> Option<u32> {
        self.workers
            .iter()
            .find(|worker| worker.slot == slot)
            .map(|worker| worker.child.id())
    }

    /// `slot`'s network in `mode` for `how_long`, then healed.
    fn cut(&self, slot: usize, mode: ProxyMode, how_long: std::time::Duration) {
        self.proxies[slot].set(mode);
        std::thread::sleep(how_long);
        self.proxies[slot].set(ProxyMode::Pass);
    }

    fn restart_database(&mut self) -> anyhow::Result<()> {
        self.setup
            .cluster
            .restart()
            .context("cannot restart PostgreSQL")
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
