//! The payment service put together: the PG client, the confirm flow and the API, served on
//! a loopback port.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::time::Duration;

use breakwater::Registry;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::api::{self, AppState};
use crate::billing::Billing;
use crate::confirm::{PaymentConfirm, Timing};
use crate::pg_client::{PgClient, PgSettings};
use crate::store::Store;
use crate::telemetry;

/// The service, running. It stops when dropped.
#[derive(Debug)]
pub struct App {
    addr: SocketAddr,
    confirm: PaymentConfirm,
    billing: Billing,
    registry: Registry,
    shutdown: Option<oneshot::Sender<()>>,
    serving: JoinHandle<std::io::Result<()>>,
}

impl App {
    /// Serves the API on `addr` (`127.0.0.1:0`: a port the system picks), confirming through
    /// the PG of `pg` behind `registry`'s breaker, storing in `store`.
    ///
    /// It installs the Prometheus recorder first (see [`telemetry::prometheus`]), so that
    /// the breakers it builds report to `/metrics`.
    ///
    /// # Errors
    ///
    /// If `addr` cannot be bound.
    pub async fn start(
        addr: SocketAddr,
        registry: Registry,
        store: Store,
        pg: PgSettings,
    ) -> std::io::Result<Self> {
        let _ = telemetry::prometheus();
        // See `Timing`: the deadlines, graces and leases follow the read timeout.
        let timing = Timing::for_read_timeout(pg.read_timeout);
        let client = PgClient::new(&registry, pg);
        let billing = Billing::new(store.clone(), client.clone(), instance_name("billing"))
            .with_db_chaos(&registry.chaos(crate::DB_CHAOS))
            .with_deadline(timing.deadline)
            .grace(timing.grace)
            .lease(timing.lease);
        let confirm = PaymentConfirm::new(store, client)
            .with_db_chaos(&registry.chaos(crate::DB_CHAOS))
            .with_deadline(timing.deadline);
        let router = api::router(AppState::new(
            confirm.clone(),
            billing.clone(),
            registry.clone(),
        ));
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (shutdown, stopped) = oneshot::channel::<()>();
        let serving = tokio::spawn(
            axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .into_future(),
        );
        Ok(Self {
            addr,
            confirm,
            billing,
            registry,
            shutdown: Some(shutdown),
            serving,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The confirm flow (its store and PG client).
    pub fn confirm(&self) -> &PaymentConfirm {
        &self.confirm
    }

    /// The subscriptions' scheduler and its reconciler, over the same PG client.
    pub fn billing(&self) -> &Billing {
        &self.billing
    }

    /// The registry of its breakers.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Serves until stopped, then returns how serving ended.
    ///
    /// # Errors
    ///
    /// If serving failed.
    pub async fn wait(mut self) -> std::io::Result<()> {
        match (&mut self.serving).await {
            Ok(result) => result,
            Err(join) => Err(std::io::Error::other(join)),
        }
    }

    /// Stops accepting connections, lets the requests in flight finish for up to `drain`,
    /// then returns how serving ended. Requests still running after `drain` are cut off.
    ///
    /// # Errors
    ///
    /// If serving failed, or requests were still running after `drain`
    /// ([`ErrorKind::TimedOut`](std::io::ErrorKind::TimedOut)).
    pub async fn stop(mut self, drain: Duration) -> std::io::Result<()> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        match tokio::time::timeout(drain, &mut self.serving).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(std::io::Error::other(join)),
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("requests still in flight after {} ms", drain.as_millis()),
            )),
        }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        self.serving.abort();
    }
}

/// A name unique across processes and replicas (the pid alone is 1 in every container): a
/// claimant's.
pub fn instance_name(role: &str) -> String {
    format!(
        "{role}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    )
}
