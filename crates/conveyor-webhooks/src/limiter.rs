//! Per-endpoint bounded concurrency.
//!
//! A dispatcher delivering many events at once must not let one slow endpoint (answering after
//! 10 s, every time) take every delivery slot and hold back everyone else's webhooks. Each
//! endpoint therefore gets its own small number of permits; a delivery waits only for permits of
//! its own endpoint. Endpoints come and go, so an entry exists only while someone holds or waits
//! for one of its permits, and memory follows the number of busy endpoints, not of all endpoints
//! ever seen. This bounds one process; a fleet-wide bound needs shared state and lives elsewhere.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Default permits per endpoint: concurrent deliveries to one endpoint.
pub const DEFAULT_PERMITS_PER_ENDPOINT: usize = 4;

/// A map of semaphores keyed by endpoint, each with the same number of permits.
pub struct EndpointLimiter<K> {
    shared: Arc<Shared<K>>,
}

struct Shared<K> {
    permits_per_endpoint: usize,
    // A std mutex: it is held only for a map lookup, never across an await.
    endpoints: Mutex<HashMap<K, Arc<Semaphore>>>,
}

impl<K> Clone for EndpointLimiter<K> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<K> fmt::Debug for EndpointLimiter<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointLimiter")
            .field("permits_per_endpoint", &self.shared.permits_per_endpoint)
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Clone> EndpointLimiter<K> {
    /// A limiter allowing `permits_per_endpoint` concurrent holders per endpoint (at least 1).
    pub fn new(permits_per_endpoint: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                permits_per_endpoint: permits_per_endpoint.max(1),
                endpoints: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Waits for a permit of `endpoint`; the permit is returned when the guard drops.
    ///
    /// Cancel-safe: dropping the future while it waits frees the endpoint's entry if nobody
    /// else uses it.
    pub async fn acquire(&self, endpoint: K) -> EndpointPermit<K> {
        let slot = self.slot(endpoint);
        let permit = Arc::clone(&slot.semaphore)
            .acquire_owned()
            .await
            .expect("endpoint semaphores are never closed");
        EndpointPermit {
            _permit: permit,
            _slot: slot,
        }
    }

    /// Takes a permit of `endpoint` if one is free right now.
    pub fn try_acquire(&self, endpoint: K) -> Option<EndpointPermit<K>> {
        let slot = self.slot(endpoint);
        let permit = Arc::clone(&slot.semaphore).try_acquire_owned().ok()?;
        Some(EndpointPermit {
            _permit: permit,
            _slot: slot,
        })
    }

    /// How many endpoints have permits held or awaited right now.
    pub fn busy_endpoints(&self) -> usize {
        self.shared.lock().len()
    }

    fn slot(&self, endpoint: K) -> Slot<K> {
        let semaphore = {
            let mut endpoints = self.shared.lock();
            let permits = self.shared.permits_per_endpoint;
            Arc::clone(
                endpoints
                    .entry(endpoint.clone())
                    .or_insert_with(|| Arc::new(Semaphore::new(permits))),
            )
        };
        Slot {
            shared: Arc::clone(&self.shared),
            endpoint,
            semaphore,
        }
    }
}

impl<K> Shared<K> {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Arc<Semaphore>>> {
        // The map stays consistent even if a holder panicked: every change is one insert or
        // remove.
        self.endpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// A permit to deliver to one endpoint; dropping it frees the permit.
#[must_use = "the permit is released as soon as it is dropped"]
pub struct EndpointPermit<K: Hash + Eq> {
    // Fields drop in declaration order: the permit (and its reference to the semaphore) is
    // released before the slot checks whether the entry is idle.
    _permit: OwnedSemaphorePermit,
    _slot: Slot<K>,
}

impl<K: Hash + Eq> fmt::Debug for EndpointPermit<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointPermit").finish_non_exhaustive()
    }
}

/// One user's claim on an endpoint's entry: holding or waiting for a permit.
struct Slot<K: Hash + Eq> {
    shared: Arc<Shared<K>>,
    endpoint: K,
    semaphore: Arc<Semaphore>,
}

impl<K: Hash + Eq> Drop for Slot<K> {
    fn drop(&mut self) {
        let mut endpoints = self.shared.lock();
        // Clones of the semaphore are only made under this lock, so the count is exact: two
        // means the map and this slot, so nobody else holds or waits for a permit.
        let idle = endpoints
            .get(&self.endpoint)
            .is_some_and(|entry| Arc::ptr_eq(entry, &self.semaphore))
            && Arc::strong_count(&self.semaphore) == 2;
        if idle {
            endpoints.remove(&self.endpoint);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn one_busy_endpoint_does_not_hold_back_another() {
        let limiter = EndpointLimiter::new(2);
        let first = limiter.acquire("slow").await;
        let second = limiter.acquire("slow").await;
        assert!(limiter.try_acquire("slow").is_none());
        // Another endpoint is unaffected.
        let other = limiter.try_acquire("fast").expect("fast has free permits");
        assert_eq!(limiter.busy_endpoints(), 2);

        // A waiter on the full endpoint gets a permit as soon as one is released.
        let waiter = {
            let limiter = limiter.clone();
            tokio::spawn(async move { limiter.acquire("slow").await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(first);
        let third = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the waiter is woken")
            .unwrap();

        drop(other);
        assert_eq!(limiter.busy_endpoints(), 1);
        drop(second);
        drop(third);
        assert_eq!(limiter.busy_endpoints(), 0, "idle entries are freed");
    }

    #[tokio::test]
    async fn a_cancelled_wait_frees_its_entry() {
        let limiter = EndpointLimiter::new(1);
        let held = limiter.acquire(7u32).await;
        let waiting = tokio::time::timeout(Duration::from_millis(20), limiter.acquire(7)).await;
        assert!(waiting.is_err(), "the only permit is held");
        assert_eq!(limiter.busy_endpoints(), 1);
        drop(held);
        assert_eq!(limiter.busy_endpoints(), 0);
        // The entry is recreated on demand.
        let again = limiter.try_acquire(7).expect("free again");
        assert_eq!(limiter.busy_endpoints(), 1);
        drop(again);
        assert_eq!(limiter.busy_endpoints(), 0);
    }
}
