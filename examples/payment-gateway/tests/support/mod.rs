//! What the example's tests share: a temporary SQLite file, the shipped configuration, and
//! the pieces started on loopback.

#![allow(dead_code, unreachable_pub)]

pub mod client;

use std::path::Path;
use std::time::Duration;

use breakwater::Registry;
use payment_gateway::demo::CONFIG;
use payment_gateway::mock_pg::MockPg;
use payment_gateway::store::TemporaryFile;
use payment_gateway::{PaymentConfirm, PgClient, PgSettings, Store};

/// A SQLite file of its own per test, removed when dropped.
pub struct TempDb(pub TemporaryFile);

impl TempDb {
    pub fn new() -> Self {
        TempDb(TemporaryFile::new("payment-gateway-test"))
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

/// The configuration file shipped with the example.
pub fn registry() -> Registry {
    Registry::from_yaml(CONFIG)
        .expect("the shipped configuration loads")
        .with_metrics(true)
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
        let store = Store::sqlite_file(db.path()).await.unwrap();
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
