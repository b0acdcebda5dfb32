//! What the example's tests share: a temporary SQLite file, the shipped configuration, and
//! the pieces started on loopback.

#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use breakwater::Registry;
use payment_gateway::demo::CONFIG;
use payment_gateway::mock_pg::MockPg;
use payment_gateway::{PaymentConfirm, PgClient, PgSettings, Store};

/// A SQLite file of its own per test, removed when dropped.
pub struct TempDb(pub PathBuf);

impl TempDb {
    pub fn new() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        TempDb(std::env::temp_dir().join(format!(
            "payment-gateway-test-{}-{n}.db",
            std::process::id()
        )))
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut path = self.0.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The configuration file shipped with the example.
pub fn registry() -> Registry {
    Registry::from_yaml(CONFIG).expect("the shipped configuration loads")
}

/// The mock PG, a store on a fresh file and a confirm flow through the seed's breaker, with
/// this read timeout.
pub struct Setup {
    pub pg: MockPg,
    pub db: TempDb,
    pub store: Store,
    pub registry: Registry,
    pub confirm: PaymentConfirm,
}

impl Setup {
    pub async fn new(read_timeout: Duration) -> Self {
        let pg = MockPg::start().await.unwrap();
        let db = TempDb::new();
        let store = Store::sqlite_file(&db.0).await.unwrap();
        let registry = registry();
        let mut settings = PgSettings::new(pg.url());
        settings.read_timeout = read_timeout;
        let client = PgClient::new(&registry, settings);
        let confirm = PaymentConfirm::new(store.clone(), client);
        Self {
            pg,
            db,
            store,
            registry,
            confirm,
        }
    }
}
