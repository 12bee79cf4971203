//! A simulator of customers' ERP/CMMS APIs, for demos, tests and benchmarks.
//!
//! One process serves the four API families Conveyor's connectors speak, each under the path
//! prefix and with the authentication its real systems use:
//!
//! | profile | paths | auth |
//! |---|---|---|
//! | SAP OData v2 | `/sap/opu/odata/sap/{service}/{set}` | basic |
//! | SAP OData v4 | `/sap/opu/odata4/sap/{service}/srvd_a2x/sap/{group}/{version}/{set}` | OAuth2 bearer from `POST /oauth2/token` (client credentials) |
//! | Maximo OSLC | `/maximo/api/os/{object structure}` | `apikey` header |
//! | Oracle Fusion REST | `/fscmRestApi/resources/11.13.18.05/{resource}` | basic |
//!
//! Data is seeded from `(seed, index)` on the fly (see [`data`]), so a million records per entity
//! cost no memory; only changes are kept. Seeded change times grow with the index (spread over
//! 30 days before [`SimConfig::seeded_until`] by default); listings are ordered by key. Changes
//! are stamped with the wall clock and shown at each family's granularity (Maximo: whole seconds
//! in its UTC offset; others: milliseconds). Deleted records disappear from listings, except where
//! the real system keeps them with a flag (SAP purchase orders, equipment and suppliers:
//! `PurchasingDocumentDeletionCode = "L"`, `EquipmentIsMarkedForDeletion`, `DeletionIndicator`).
//!
//! Changes and faults are driven directly through [`Sim`] in tests, or over HTTP (no auth; the
//! simulator listens on loopback):
//!
//! - `POST /admin/entities/{entity}/changes` `{"create":1,"update":2,"delete":1}` → the indexes
//!   changed and the stamp;
//! - `POST /admin/entities/{entity}/records/{index}/update` (or `/delete`);
//! - `PUT /admin/faults/{profile}` with a [`FaultSpec`] (`{"kind":"rate_limit",
//!   "retry_after_secs":30,"after_requests":2,"count":1}`), `DELETE /admin/faults/{profile}`,
//!   `DELETE /admin/faults`;
//! - `PUT /admin/connections` `{"refuse":true}`: every connection is cut (the system is down);
//! - `POST /admin/tokens/revoke`: every OAuth2 token issued so far stops working;
//! - `GET /admin/stats`: requests per profile and live records per entity; `GET /admin/health`.
//!
//! Start it in a test in one line: `let sim = SimHandle::start(SimConfig::default()).await?;`
//! and point a connection at `sim.base_url()`.

pub mod config;
pub mod data;
pub mod fault;
mod filter;
mod render;
mod server;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use chrono::{DateTime, Utc};
use conveyor_core::{Entity, ProfileKind};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

pub use config::{SimConfig, SimCredentials};
pub use data::{RecordState, keeps_deleted_with_flag};
pub use fault::{FaultKind, FaultSpec};

use data::EntityData;
use fault::ActiveFault;

/// The external key the simulator gives record `index` of `entity` in `profile`'s spelling
/// (SAP `PurchaseOrder` `4500000000 + index`, Maximo `poid` `index + 1`, Oracle `POHeaderId`...).
pub fn external_key(profile: ProfileKind, entity: Entity, index: u64) -> String {
    render::key(profile, entity, index)
}

/// A request to change records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChangeRequest {
    /// Records to create.
    pub create: u32,
    /// Live records to update (picked at random).
    pub update: u32,
    /// Live records to delete (picked at random).
    pub delete: u32,
}

/// What a change request did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeReport {
    /// Indexes of created records.
    pub created: Vec<u64>,
    /// Indexes of updated records.
    pub updated: Vec<u64>,
    /// Indexes of deleted records.
    pub deleted: Vec<u64>,
    /// The change time stamped on them.
    pub at: Option<DateTime<Utc>>,
}

/// Request counters of one profile.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileStats {
    /// Listing requests received (including faulty and rejected ones).
    pub list_requests: u64,
    /// Token requests received (OAuth2 token endpoint).
    pub token_requests: u64,
}

#[derive(Debug, Default)]
struct Counters {
    list_requests: AtomicU64,
    token_requests: AtomicU64,
}

/// The simulator's state, shared by its handlers and by tests.
#[derive(Debug)]
pub struct Sim {
    config: SimConfig,
    maximo_offset_secs: i32,
    base_url: OnceLock<String>,
    /// Records; a read lock is held only while a page's record states are copied out.
    data: RwLock<Data>,
    faults: Mutex<HashMap<ProfileKind, ActiveFault>>,
    /// While set, connections are cut: new ones at accept, open ones on their next request.
    refuse_connections: AtomicBool,
    /// Tokens of older generations are rejected; bumped by [`Sim::revoke_tokens`].
    token_generation: AtomicU64,
    counters: [Counters; 4],
}

#[derive(Debug)]
struct Data {
    entities: [EntityData; 4],
    /// Random state for picking records to change (SplitMix64 sequence from the seed).
    random: u64,
    /// The latest change stamp, so stamps never go backwards if the clock does.
    last_stamp_ms: i64,
}

fn slot(entity: Entity) -> usize {
    match entity {
        Entity::PurchaseOrders => 0,
        Entity::WorkOrders => 1,
        Entity::Assets => 2,
        _ => 3,
    }
}

fn profile_slot(profile: ProfileKind) -> usize {
    match profile {
        ProfileKind::ODataV2 => 0,
        ProfileKind::ODataV4 => 1,
        ProfileKind::Oslc => 2,
        _ => 3,
    }
}

impl Sim {
    /// A simulator with `config`'s seeded data and no changes or faults.
    pub fn new(config: SimConfig) -> Result<Arc<Sim>, config::ConfigProblems> {
        config.check()?;
        let last_ms = config.seeded_until.timestamp_millis();
        let step_ms = config.step_ms();
        let seeded = config.records_per_entity;
        let maximo_offset_secs = config.maximo_offset_secs().unwrap_or(0);
        Ok(Arc::new(Sim {
            data: RwLock::new(Data {
                entities: std::array::from_fn(|_| EntityData::new(seeded, last_ms, step_ms)),
                random: config.seed,
                last_stamp_ms: last_ms,
            }),
            maximo_offset_secs,
            config,
            base_url: OnceLock::new(),
            faults: Mutex::new(HashMap::new()),
            refuse_connections: AtomicBool::new(false),
            token_generation: AtomicU64::new(1),
            counters: Default::default(),
        }))
    }

    /// Its configuration.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// `http://127.0.0.1:port` once serving.
    pub fn base_url(&self) -> &str {
        self.base_url
            .get()
            .map_or("http://127.0.0.1", String::as_str)
    }

    /// When seeded record `index` was last changed (before any change made to it).
    pub fn seeded_updated_at(&self, entity: Entity, index: u64) -> DateTime<Utc> {
        let ms = self.read_data().entities[slot(entity)].seeded_ms(index);
        DateTime::from_timestamp_millis(ms).unwrap_or_default()
    }

    /// The current state of a record, if it exists (deleted ones included).
    pub fn record(&self, entity: Entity, index: u64) -> Option<RecordState> {
        self.read_data().entities[slot(entity)].get(index)
    }

    /// Records of `entity` that exist and are not deleted.
    pub fn live_count(&self, entity: Entity) -> u64 {
        self.read_data().entities[slot(entity)].live_count()
    }

    /// Creates, updates and deletes records, all stamped with the current time.
    pub fn apply_changes(&self, entity: Entity, request: ChangeRequest) -> ChangeReport {
        let mut data = self.write_data();
        let now = data.stamp();
        let mut report = ChangeReport {
            at: DateTime::from_timestamp_millis(now),
            ..ChangeReport::default()
        };
        let Data {
            entities, random, ..
        } = &mut *data;
        let records = &mut entities[slot(entity)];
        let mut next_random = || {
            *random = random.wrapping_add(1);
            data::mix(*random)
        };
        for _ in 0..request.create {
            report.created.push(records.create(now));
        }
        for (count, delete, out) in [
            (request.update, false, &mut report.updated),
            (request.delete, true, &mut report.deleted),
        ] {
            for _ in 0..count {
                if let Some(index) = records.pick_live(&mut next_random) {
                    records.modify(index, now, delete);
                    out.push(index);
                }
            }
        }
        tracing::debug!(
            entity = %entity,
            created = report.created.len(),
            updated = report.updated.len(),
            deleted = report.deleted.len(),
            "records changed"
        );
        report
    }

    /// Updates a live record; `None` if there is none at `index`.
    pub fn update(&self, entity: Entity, index: u64) -> Option<DateTime<Utc>> {
        self.modify(entity, index, false)
    }

    /// Deletes a live record; `None` if there is none at `index`.
    pub fn delete(&self, entity: Entity, index: u64) -> Option<DateTime<Utc>> {
        self.modify(entity, index, true)
    }

    fn modify(&self, entity: Entity, index: u64, delete: bool) -> Option<DateTime<Utc>> {
        let mut data = self.write_data();
        let now = data.stamp();
        data.entities[slot(entity)]
            .modify(index, now, delete)
            .then(|| DateTime::from_timestamp_millis(now))
            .flatten()
    }

    /// Switches a fault on for a profile, replacing any other.
    pub fn set_fault(&self, profile: ProfileKind, spec: FaultSpec) {
        self.lock_faults().insert(profile, ActiveFault::new(spec));
    }

    /// Switches a profile's fault off.
    pub fn clear_fault(&self, profile: ProfileKind) {
        self.lock_faults().remove(&profile);
    }

    /// Switches every fault off, and accepts connections again.
    pub fn clear_faults(&self) {
        self.lock_faults().clear();
        self.set_refuse_connections(false);
    }

    /// Cuts every connection (new and open) while `refuse` is set: the whole system is down.
    pub fn set_refuse_connections(&self, refuse: bool) {
        self.refuse_connections.store(refuse, Ordering::SeqCst);
    }

    /// Invalidates every OAuth2 token issued so far, as an identity provider rotating keys does.
    pub fn revoke_tokens(&self) {
        self.token_generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Request counters of a profile.
    pub fn stats(&self, profile: ProfileKind) -> ProfileStats {
        let counters = &self.counters[profile_slot(profile)];
        ProfileStats {
            list_requests: counters.list_requests.load(Ordering::SeqCst),
            token_requests: counters.token_requests.load(Ordering::SeqCst),
        }
    }

    fn read_data(&self) -> std::sync::RwLockReadGuard<'_, Data> {
        // A panic while holding the lock cannot leave the data half-changed in a way that
        // matters to a simulator, so a poisoned lock is simply used.
        self.data
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write_data(&self) -> std::sync::RwLockWriteGuard<'_, Data> {
        self.data
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn lock_faults(&self) -> std::sync::MutexGuard<'_, HashMap<ProfileKind, ActiveFault>> {
        self.faults
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Data {
    fn stamp(&mut self) -> i64 {
        let now = Utc::now().timestamp_millis().max(self.last_stamp_ms);
        self.last_stamp_ms = now;
        now
    }
}

/// Serves the simulator on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    config: SimConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let sim = Sim::new(config)?;
    serve_sim(listener, sim, shutdown).await
}

/// Serves an existing [`Sim`] (so a caller can keep a handle on its state).
pub async fn serve_sim(
    listener: TcpListener,
    sim: Arc<Sim>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let address = listener.local_addr()?;
    let _ = sim.base_url.set(format!("http://{address}"));
    let churn =
        (sim.config.churn_per_second > 0.0).then(|| tokio::spawn(server::churn(Arc::clone(&sim))));
    tracing::info!(
        %address,
        records_per_entity = sim.config.records_per_entity,
        "simulator listening"
    );
    let result = server::run(listener, Arc::clone(&sim), shutdown).await;
    if let Some(churn) = churn {
        churn.abort();
    }
    result
}

/// A simulator running in the background on a free loopback port; stops when dropped.
#[derive(Debug)]
pub struct SimHandle {
    sim: Arc<Sim>,
    address: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl SimHandle {
    /// Starts a simulator on `127.0.0.1:0`.
    pub async fn start(config: SimConfig) -> anyhow::Result<SimHandle> {
        let sim = Sim::new(config)?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve_sim(listener, Arc::clone(&sim), async move {
            let _ = stopped.await;
        }));
        Ok(SimHandle {
            sim,
            address,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:port`: the base URL of every profile.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The listening address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The simulator's state: changes, faults, counters.
    pub fn sim(&self) -> &Arc<Sim> {
        &self.sim
    }

    /// Stops serving and waits for the server to finish.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await?,
            None => Ok(()),
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
