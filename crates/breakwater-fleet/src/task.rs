//! The fleet's background task: a round per heartbeat (and per transition) publishes each
//! joined breaker's snapshot, reads the others', applies the quorum, and plays the fleet's
//! prober; Redis failing only makes the breakers local-only.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use breakwater::{CircuitBreaker, CircuitState};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::time::Instant;

use crate::scripts::{HEARTBEAT, PROBE};
use crate::snapshot::{self, Origin, Snapshot};
use crate::view::{Report, Seen, quorum_open};
use crate::{FleetEvent, Inner, Member};

/// The fleet's settings, checked.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) instance: String,
    pub(crate) incarnation: u64,
    pub(crate) heartbeat: Duration,
    pub(crate) ttl: Duration,
    pub(crate) quorum: u32,
    pub(crate) prefix: String,
    pub(crate) max_open: Duration,
    pub(crate) max_probe_time: Duration,
}

impl Config {
    fn key(&self, breaker: &str, rest: &str) -> String {
        format!("{}:{breaker}:{rest}", self.prefix)
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.ttl.as_millis()).unwrap_or(snapshot::MAX_MS)
    }

    /// What this instance writes in the probe key while it probes, and once its probes
    /// succeeded.
    fn probe_value(&self, what: &str) -> String {
        format!("{what} {} {:016x}", self.instance, self.incarnation)
    }

    /// A call of the probe script (see [`PROBE`]) on `breaker`'s probe key: `action`, and for
    /// `stale` the mark to delete.
    fn probe(&self, breaker: &str, action: &str, mark: &str) -> redis::ScriptInvocation<'static> {
        let mut invocation = PROBE.key(self.key(breaker, "probe"));
        invocation
            .arg(action)
            .arg(self.probe_value("probe"))
            .arg(self.ttl_ms())
            .arg(self.probe_value("closed"))
            .arg(u64::try_from(self.max_open.as_millis()).unwrap_or(snapshot::MAX_MS))
            .arg(mark)
            .arg(snapshot::MAX_LEN);
        invocation
    }

    /// How long one round may take: a heartbeat (a Redis slower than that is as good as
    /// down), but never less than 50 ms, a scheduling hiccup on a loaded machine.
    fn round_budget(&self) -> Duration {
        self.heartbeat.max(Duration::from_millis(50))
    }
}

/// Starts the task: a first round (bounded by the TTL), then the loop.
pub(crate) async fn spawn(inner: Arc<Inner>, client: redis::Client) -> tokio::task::JoinHandle<()> {
    let config = &inner.config;
    let manager = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(config.round_budget()))
        .set_response_timeout(Some(config.round_budget()))
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(10))
        .set_max_delay(config.heartbeat);
    let connection = match ConnectionManager::new_lazy_with_config(client, manager) {
        Ok(connection) => Some(connection),
        Err(error) => {
            tracing::error!(%error, "breakwater-fleet: no Redis connection can be made: every breaker stays local");
            None
        }
    };
    let mut task = Task {
        metrics: Metrics::new(&config.instance),
        inner: Arc::clone(&inner),
        connection,
        seen: HashMap::new(),
        probing: HashMap::new(),
        told: HashMap::new(),
        ignored: HashMap::new(),
        leaving: Vec::new(),
        last_ok: None,
        local_only: false,
    };
    task.metrics.connected.set(0.0);
    let _ = tokio::time::timeout(inner.config.ttl, task.round()).await;
    tokio::spawn(task.run())
}

struct Metrics {
    connected: metrics::Gauge,
    ignored: metrics::Counter,
    failed: metrics::Counter,
}

impl Metrics {
    fn new(instance: &str) -> Self {
        let label = [("instance", instance.to_owned())];
        Self {
            connected: metrics::gauge!("breakwater_fleet_connected", &label),
            ignored: metrics::counter!("breakwater_fleet_ignored_total", &label),
            failed: metrics::counter!("breakwater_fleet_rounds_failed_total", &label),
        }
    }
}

struct Task {
    inner: Arc<Inner>,
    connection: Option<ConnectionManager>,
    metrics: Metrics,
    /// Per breaker: the run and generation last read from each instance.
    seen: HashMap<Arc<str>, Seen>,
    /// The breakers this instance probes for the fleet, and since when.
    probing: HashMap<Arc<str>, Instant>,
    /// Per breaker: what Redis has been told of its openings (see [`Told`]).
    told: HashMap<Arc<str>, Told>,
    /// The last value ignored in each key, so one bad value is reported once.
    ignored: HashMap<String, String>,
    /// Breakers dropped since the last round: their reports are deleted at the next.
    leaving: Vec<Arc<str>>,
    /// When Redis last answered a whole round.
    last_ok: Option<Instant>,
    /// Whether the fleet has said it went local-only (and not yet that it rejoined).
    local_only: bool,
}

/// What Redis has been told of a breaker's openings: how many of its own and of the fleet's,
/// and Redis's time (microseconds) when the latest was told; only a "closed" mark stamped
/// after that may close the breaker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Told {
    own: u64,
    fleet: u64,
    at: u64,
}

/// A joined breaker that still exists, for one round.
struct Live {
    member: Arc<Member>,
    breaker: CircuitBreaker,
}

impl Task {
    async fn run(mut self) {
        loop {
            if self.inner.stopping.load(Ordering::Acquire) {
                self.finish().await;
                return;
            }
            let started = Instant::now();
            let next =
                match tokio::time::timeout(self.inner.config.round_budget(), self.round()).await {
                    Ok(next) => next,
                    Err(_) => {
                        self.failed("Redis did not answer within a heartbeat".to_owned());
                        self.inner.config.heartbeat
                    }
                };
            let wake = self.inner.wake.notified();
            tokio::select! {
                () = wake => {}
                () = tokio::time::sleep_until(started + next) => {}
            }
        }
    }

    /// One round; returns how long until the next (a heartbeat, or sooner when a breaker's
    /// open wait ends before it).
    async fn round(&mut self) -> Duration {
        let live = self.live();
        match self.exchange(&live).await {
            Ok(()) => self.succeeded(&live),
            Err(error) => self.failed(error.to_string()),
        }
        let heartbeat = self.inner.config.heartbeat;
        live.iter()
            .filter_map(|l| {
                let m = l.breaker.metrics();
                (m.state == CircuitState::Open).then_some(m.retry_after?)
            })
            .filter(|left| !left.is_zero())
            .map(|left| left + Duration::from_millis(1))
            .fold(heartbeat, Duration::min)
    }

    /// The joined breakers that still exist; the dropped ones leave.
    fn live(&mut self) -> Vec<Live> {
        let replaced: Vec<Arc<str>> = std::mem::take(
            &mut *self
                .inner
                .replaced
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        self.leaving.extend(replaced);
        let mut members = self.inner.members();
        let mut live = Vec::with_capacity(members.len());
        members.retain(|member| match member.breaker.upgrade() {
            Some(breaker) => {
                live.push(Live {
                    member: Arc::clone(member),
                    breaker,
                });
                true
            }
            None => {
                self.leaving.push(Arc::clone(&member.name));
                false
            }
        });
        live
    }

    async fn exchange(&mut self, live: &[Live]) -> redis::RedisResult<()> {
        let Some(mut connection) = self.connection.clone() else {
            return Err(redis::RedisError::from((
                redis::ErrorKind::Client,
                "no Redis connection",
            )));
        };
        while let Some(name) = self.leaving.last().cloned() {
            // Taken off the list only once done: a failed round leaves it for the next.
            self.leave_breaker(&mut connection, &name).await?;
            self.leaving.pop();
        }
        if live.is_empty() {
            // Nothing to publish: still find out whether Redis answers.
            return redis::cmd("PING").query_async(&mut connection).await;
        }
        let inner = Arc::clone(&self.inner);
        let config = &inner.config;
        for Live { member, breaker } in live {
            let snapshot = own_snapshot(config, member, breaker);
            let reply: redis::Value = HEARTBEAT
                .key(config.key(&member.name, &format!("i:{}", config.instance)))
                .key(config.key(&member.name, "members"))
                .arg(snapshot.to_string())
                .arg(config.ttl_ms())
                .arg(&config.instance)
                .arg(config.key(&member.name, "i:"))
                .arg(snapshot::MAX_LEN)
                .invoke_async(&mut connection)
                .await?;
            let reports = self.reports(&member.name, reply);
            // While local-only (until a whole round has succeeded again), the others'
            // reports are not applied.
            if !self.local_only {
                *member.peers.lock().unwrap_or_else(PoisonError::into_inner) =
                    reports.iter().map(Report::peer).collect();
                if breaker.state() == CircuitState::Closed {
                    let floor = config.heartbeat;
                    if let Some((wait, reporting)) =
                        quorum_open(&reports, config.quorum, floor, config.max_open)
                    {
                        breaker.open_by_fleet(wait, reporting);
                    }
                }
            }
            // Nor is the fleet's probe played: holds have lapsed, each breaker probes alone.
            if !self.local_only {
                self.prober(&mut connection, member, breaker).await?;
            }
        }
        Ok(())
    }

    /// Reads the others' reports from a heartbeat's reply, ignoring what cannot be trusted.
    fn reports(&mut self, breaker: &Arc<str>, reply: redis::Value) -> Vec<Report> {
        let items = match reply {
            redis::Value::Array(items) => items,
            other => {
                let key = self.inner.config.key(breaker, "members");
                self.ignore(
                    &key,
                    &format!("{other:?}"),
                    "the heartbeat's reply is not a list",
                );
                return Vec::new();
            }
        };
        let mut reports = Vec::new();
        for triple in items.chunks(3) {
            let [instance, value, pttl] = triple else {
                continue;
            };
            let instance = text(instance).unwrap_or_default();
            let key = self.inner.config.key(breaker, &format!("i:{instance}"));
            let Some(value) = text(value) else {
                self.ignore(&key, "?", "not text");
                continue;
            };
            let snapshot = match value.parse::<Snapshot>() {
                Ok(snapshot) => snapshot,
                Err(reason) => {
                    self.ignore(&key, &value, &reason);
                    continue;
                }
            };
            let left = match pttl {
                redis::Value::Int(ms) if *ms >= 0 => u64::try_from(*ms).unwrap_or(0),
                _ => {
                    self.ignore(&key, &value, "it has no TTL: it would never expire");
                    continue;
                }
            };
            reports.push(Report {
                instance,
                age: Duration::from_millis(snapshot.ttl_ms.saturating_sub(left)),
                snapshot,
            });
        }
        let seen = self.seen.entry(Arc::clone(breaker)).or_default();
        // Forget only the instances gone from Redis, not those whose report was stale.
        seen.retain(&reports);
        reports.retain(|report| seen.fresh(report));
        reports
    }

    /// The fleet's prober: take the probe when this breaker's wait is over, keep it while
    /// probing, mark the fleet closed when the probes succeed, give it back when they fail;
    /// or, held while another instance probes, close on its mark.
    async fn prober(
        &mut self,
        connection: &mut ConnectionManager,
        member: &Member,
        breaker: &CircuitBreaker,
    ) -> redis::RedisResult<()> {
        let inner = Arc::clone(&self.inner);
        let config = &inner.config;
        let key = config.key(&member.name, "probe");
        let owner = config.probe_value("probe");
        let probe = |action: &str| config.probe(&member.name, action, "");
        // Every opening on this instance's own evidence is told to Redis (which deletes the
        // fleet's last "closed" mark) before this instance may close on a mark again: only a
        // mark written after that, by Redis's one clock, is newer than the opening. Counted,
        // so an opening whose telling failed (or was cut off) is told at the next round.
        // An opening the fleet made is stamped too (without deleting anything: the mark may
        // be the one the instances it followed are waiting for).
        let own = member.local_openings.load(Ordering::Acquire);
        let fleet = member.fleet_openings.load(Ordering::Acquire);
        let mut told = self.told.get(&member.name).copied().unwrap_or_default();
        for (action, untold) in [("opened", told.own != own), ("time", told.fleet != fleet)] {
            if untold {
                let (_, now): (String, i64) = probe(action).invoke_async(connection).await?;
                let at = told.at.max(u64::try_from(now).unwrap_or(0));
                told = match action {
                    "opened" => Told { own, at, ..told },
                    _ => Told { fleet, at, ..told },
                };
                self.told.insert(Arc::clone(&member.name), told);
            }
        }
        if let Some(since) = self.probing.get(&member.name).copied() {
            let mut state = breaker.state();
            if state == CircuitState::HalfOpen && since.elapsed() >= config.max_probe_time {
                if breaker.end_probing() {
                    tracing::info!(breaker = %member.name, instance = %config.instance,
                        "breakwater-fleet: no probe finished in time here: back to open, the fleet's probe to another instance");
                }
                // Or its probes finished just now: what it is now decides.
                state = breaker.state();
            }
            let action = match state {
                CircuitState::HalfOpen => "renew",
                // Only a half-open state closed by its own probes is news for the fleet; a
                // reset or a reconfiguration is not.
                CircuitState::Closed if member.probes_succeeded.load(Ordering::Acquire) => {
                    "succeeded"
                }
                _ => "failed",
            };
            let (answer, _): (String, i64) = probe(action).invoke_async(connection).await?;
            if action != "renew" || answer == "lost" {
                self.probing.remove(&member.name);
            }
            return Ok(());
        }
        if !breaker.wait_over() {
            return Ok(());
        }
        let (answer, left): (redis::Value, i64) = probe("take").invoke_async(connection).await?;
        let Some(answer) = text(&answer) else {
            self.ignore(&key, "?", "not text");
            breaker.start_probing();
            return Ok(());
        };
        // Our own lease: a round cut off after taking it.
        if answer == "taken" || answer == owner {
            if breaker.start_probing() {
                self.probing
                    .insert(Arc::clone(&member.name), Instant::now());
            } else {
                let _: (String, i64) = probe("failed").invoke_async(connection).await?;
            }
            return Ok(());
        }
        let fields: Vec<&str> = answer.split(' ').collect();
        let left = u64::try_from(left).unwrap_or(0);
        let within = |limit: Duration| left > 0 && u128::from(left) <= limit.as_millis();
        match fields.as_slice() {
            ["closed", _, _, micros] if within(config.max_open) => {
                let newer = micros.parse::<u64>().is_ok_and(|m| m > told.at);
                if newer {
                    breaker.close_by_fleet();
                } else if member.fleet_opened.load(Ordering::Acquire) {
                    // Older than the opening the fleet made here (on others' evidence): not
                    // proof for this breaker, but maybe the one those others wait for. This
                    // instance probes for itself and leaves the mark.
                    breaker.start_probing();
                } else {
                    // A mark older than this breaker's opening (its evidence predates the
                    // failure seen here) must not block the fleet's probe: delete it.
                    let _: (String, i64) = config
                        .probe(&member.name, "stale", &answer)
                        .invoke_async(connection)
                        .await?;
                }
            }
            // Another instance probes for the fleet: stay held.
            ["probe", _, _] if within(config.max_probe_time) => {}
            _ => {
                self.ignore(
                    &key,
                    &answer,
                    "not a prober this fleet wrote (another shape, no TTL, or a lease longer than max-probe-time)",
                );
                // Nobody can be trusted to probe: this instance probes for itself.
                breaker.start_probing();
            }
        }
        Ok(())
    }

    /// Deletes the reports of a breaker that was dropped, and gives back its probe.
    async fn leave_breaker(
        &mut self,
        connection: &mut ConnectionManager,
        name: &Arc<str>,
    ) -> redis::RedisResult<()> {
        let config = &self.inner.config;
        let mut pipe = redis::pipe();
        pipe.del(config.key(name, &format!("i:{}", config.instance)))
            .ignore()
            .srem(config.key(name, "members"), &config.instance)
            .ignore();
        let () = pipe.query_async(connection).await?;
        if self.probing.remove(name).is_some() {
            let _: (String, i64) = config
                .probe(name, "failed", "")
                .invoke_async(connection)
                .await?;
        }
        self.seen.remove(name);
        self.told.remove(name);
        Ok(())
    }

    fn succeeded(&mut self, live: &[Live]) {
        self.last_ok = Some(Instant::now());
        // Renewed only when a whole round succeeded: once Redis stops answering, every hold
        // lapses when the fleet view gets older than the TTL, and each breaker probes alone.
        for Live { breaker, .. } in live {
            breaker.hold_probes(self.inner.config.ttl);
        }
        if !self.inner.connected.swap(true, Ordering::AcqRel) {
            self.metrics.connected.set(1.0);
        }
        if self.local_only {
            self.local_only = false;
            tracing::info!(instance = %self.inner.config.instance, "breakwater-fleet: Redis answers again: breakers rejoined the fleet");
            let _ = self.inner.events.send(FleetEvent::Rejoined);
        }
    }

    /// A round failed: once the last good one is older than the TTL, go local-only.
    fn failed(&mut self, error: String) {
        self.metrics.failed.increment(1);
        let ttl = self.inner.config.ttl;
        if self.last_ok.is_some_and(|ok| ok.elapsed() < ttl) || self.local_only {
            return;
        }
        self.local_only = true;
        self.inner.connected.store(false, Ordering::Release);
        self.metrics.connected.set(0.0);
        for member in self.inner.members().iter() {
            member
                .peers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
            if let Some(breaker) = member.breaker.upgrade() {
                breaker.hold_probes(Duration::ZERO);
            }
        }
        // A probe held in Redis runs out with its lease.
        self.probing.clear();
        tracing::warn!(
            instance = %self.inner.config.instance,
            %error,
            "breakwater-fleet: the fleet view is older than its TTL: every breaker decides alone until Redis answers"
        );
        let _ = self.inner.events.send(FleetEvent::LocalOnly { error });
    }

    /// Reports an ignored value, once per key and value.
    fn ignore(&mut self, key: &str, value: &str, reason: &str) {
        let value: String = value.chars().take(80).collect();
        if self.ignored.get(key) == Some(&value) {
            return;
        }
        self.ignored.insert(key.to_owned(), value.clone());
        if self.ignored.len() > 1024 {
            self.ignored.clear();
        }
        self.metrics.ignored.increment(1);
        tracing::warn!(
            key,
            value,
            reason,
            "breakwater-fleet: ignored a value in Redis"
        );
        let _ = self.inner.events.send(FleetEvent::Ignored {
            key: key.to_owned(),
            reason: reason.to_owned(),
        });
    }

    /// The fleet ends: every hold let go, every subscription ended, this instance's reports
    /// deleted and its probes given back (bounded by the TTL).
    async fn finish(mut self) {
        let live = self.live();
        for Live { member, breaker } in &live {
            breaker.hold_probes(Duration::ZERO);
            if let Some(id) = member
                .subscription
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
            {
                breaker.unsubscribe(id);
            }
            self.leaving.push(Arc::clone(&member.name));
        }
        self.inner.members().clear();
        if let Some(mut connection) = self.connection.clone() {
            let leaving = std::mem::take(&mut self.leaving);
            let _ = tokio::time::timeout(self.inner.config.ttl, async {
                for name in &leaving {
                    self.leave_breaker(&mut connection, name).await?;
                }
                Ok::<(), redis::RedisError>(())
            })
            .await;
        }
        self.inner.connected.store(false, Ordering::Release);
        self.metrics.connected.set(0.0);
    }
}

/// This instance's report of `breaker` now.
fn own_snapshot(config: &Config, member: &Member, breaker: &CircuitBreaker) -> Snapshot {
    let m = breaker.metrics();
    let open = m.state == CircuitState::Open;
    let open_ms = m.retry_after.filter(|_| open).map_or(0, |left| {
        u64::try_from(left.as_millis()).unwrap_or(snapshot::MAX_MS)
    });
    let fleet = open && member.fleet_opened.load(Ordering::Acquire);
    Snapshot {
        incarnation: config.incarnation,
        generation: member.generation.load(Ordering::Acquire),
        ttl_ms: config.ttl_ms(),
        state: m.state,
        origin: if fleet { Origin::Fleet } else { Origin::Local },
        open_ms: open_ms.min(snapshot::MAX_MS),
        calls: m.buffered_calls,
        failed: m.failed_calls.min(m.buffered_calls),
        slow: m.slow_calls.min(m.buffered_calls),
    }
}

/// A reply item as text, if it is text.
fn text(value: &redis::Value) -> Option<String> {
    match value {
        redis::Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        redis::Value::SimpleString(text) => Some(text.clone()),
        _ => None,
    }
}
