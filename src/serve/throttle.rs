//! What one client may take: the activation throttle (tokenless refusals cost the
//! prober, not the ledger) and the bounds on open event streams ([`StreamSlots`]).
//!
//! An activation needs no token, and a refused one is recorded (R10), so a client that
//! presents unknown or exhausted keys could otherwise grow the append-only log and spend
//! the writer's time at will. Every refusal therefore takes a cell from two token buckets
//! (GCRA, `governor`): one per client address and one per presented key. A bucket that runs
//! dry blocks its address or key for as long as the bucket needs to refill one cell, and a
//! blocked activation is answered 429 `throttled` with `Retry-After` before it reaches the
//! writer. Accepted activations take nothing: a fleet activating within its key's limit
//! is never slowed, and its key's own limit already bounds what it can append.
//!
//! Not by principal: a tokenless activation's actor (`activation-client/<name>`) is chosen
//! by the client, so the address is what a prober cannot rotate for free. Behind a reverse
//! proxy every client shares the proxy's address: set `--refusals-per-address 0` there.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// A presented key, by a digest of its normalized text: the throttle never keeps a key
/// text in memory.
pub type KeyTag = [u8; 16];

/// The tag of a presented key text.
pub fn key_tag(text: &keyledger_core::ProductKeyText) -> KeyTag {
    let digest = blake3::hash(text.reveal().as_bytes());
    let mut tag = [0; 16];
    tag.copy_from_slice(&digest.as_bytes()[..16]);
    tag
}

/// Refusals a second (and the burst) allowed per address and per key; 0 turns one off.
#[derive(Clone, Copy, Debug)]
pub struct ThrottlePolicy {
    pub per_address: u32,
    pub per_key: u32,
    pub burst: u32,
}

impl From<&crate::cli::ServeArgs> for ThrottlePolicy {
    fn from(args: &crate::cli::ServeArgs) -> ThrottlePolicy {
        ThrottlePolicy {
            per_address: args.refusals_per_address,
            per_key: args.refusals_per_key,
            burst: args.refusals_burst,
        }
    }
}

/// One kind of bucket: the buckets by id, and the ids blocked until an instant.
#[derive(Debug)]
struct Buckets<K: Hash + Eq + Clone> {
    limiter: DefaultKeyedRateLimiter<K>,
    blocked: Mutex<HashMap<K, Instant>>,
}

impl<K: Hash + Eq + Clone> Buckets<K> {
    fn new(per_second: u32, burst: u32) -> Option<Buckets<K>> {
        let rate = NonZeroU32::new(per_second)?;
        let burst = NonZeroU32::new(burst.max(per_second)).unwrap_or(rate);
        Some(Buckets {
            limiter: RateLimiter::dashmap(Quota::per_second(rate).allow_burst(burst)),
            blocked: Mutex::new(HashMap::new()),
        })
    }

    /// How long `id` is still blocked, if it is.
    fn blocked_for(&self, id: &K, now: Instant) -> Option<Duration> {
        let blocked = self.blocked.lock().expect("no holder panics");
        blocked
            .get(id)
            .and_then(|until| until.checked_duration_since(now))
            .filter(|left| !left.is_zero())
    }

    /// Takes a cell for a refusal of `id`; a dry bucket blocks `id` until it refills one.
    fn refused(&self, id: &K, now: Instant) {
        if let Err(not_until) = self.limiter.check_key(id) {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let mut blocked = self.blocked.lock().expect("no holder panics");
            blocked.insert(id.clone(), now + wait.max(Duration::from_millis(1)));
        }
    }

    /// Forgets buckets that are full again and blocks that have run out: memory follows
    /// the clients of the last moments, not every client ever seen.
    fn prune(&self, now: Instant) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        let mut blocked = self.blocked.lock().expect("no holder panics");
        blocked.retain(|_, until| *until > now);
        blocked.shrink_to_fit();
    }
}

/// The throttle of tokenless activations (module doc).
#[derive(Debug)]
pub struct Throttle {
    by_address: Option<Buckets<IpAddr>>,
    by_key: Option<Buckets<KeyTag>>,
}

/// Why an activation is not admitted now, and for how long.
#[derive(Debug, PartialEq, Eq)]
pub struct Throttled {
    /// `address` or `key`.
    pub by: &'static str,
    pub retry_after: Duration,
}

impl Throttle {
    pub fn new(policy: ThrottlePolicy) -> Throttle {
        Throttle {
            by_address: Buckets::new(policy.per_address, policy.burst),
            by_key: Buckets::new(policy.per_key, policy.burst),
        }
    }

    /// Whether an activation from `address` presenting `key` may go to the writer.
    pub fn admit(&self, address: Option<IpAddr>, key: Option<&KeyTag>) -> Result<(), Throttled> {
        let now = Instant::now();
        let by_address = address.zip(self.by_address.as_ref());
        if let Some(left) = by_address.and_then(|(a, b)| b.blocked_for(&a, now)) {
            return Err(Throttled {
                by: "address",
                retry_after: left,
            });
        }
        if let Some(left) = key
            .zip(self.by_key.as_ref())
            .and_then(|(k, b)| b.blocked_for(k, now))
        {
            return Err(Throttled {
                by: "key",
                retry_after: left,
            });
        }
        Ok(())
    }

    /// Counts a refused activation against its address and key.
    pub fn refused(&self, address: Option<IpAddr>, key: Option<&KeyTag>) {
        let now = Instant::now();
        if let Some((a, b)) = address.zip(self.by_address.as_ref()) {
            b.refused(&a, now);
        }
        if let Some((k, b)) = key.zip(self.by_key.as_ref()) {
            b.refused(k, now);
        }
    }

    /// Forgets what is no longer needed; the service calls it every few seconds.
    pub fn prune(&self) {
        let now = Instant::now();
        if let Some(b) = &self.by_address {
            b.prune(now);
        }
        if let Some(b) = &self.by_key {
            b.prune(now);
        }
    }
}

/// The open event streams, in all and by principal. A stream holds its connection for as
/// long as it reads, so without these bounds streams could take every connection slot and
/// leave activations unanswered; with them, `--max-connections` less `--streams-max` slots
/// are always left to API calls.
#[derive(Debug)]
pub struct StreamSlots {
    max: u32,
    per_principal: u32,
    open: Mutex<(u32, HashMap<keyledger_core::Principal, u32>)>,
}

/// An open stream's slot, given back when the stream ends (dropped with its task).
#[derive(Debug)]
pub struct StreamSlot {
    slots: std::sync::Arc<StreamSlots>,
    principal: keyledger_core::Principal,
}

impl StreamSlots {
    pub fn new(max: u32, per_principal: u32) -> StreamSlots {
        StreamSlots {
            max,
            per_principal,
            open: Mutex::new((0, HashMap::new())),
        }
    }

    /// A slot for a stream of `principal`'s, or which bound refuses it (`streams` when all
    /// are taken, `principal` when this principal holds its share).
    pub fn open(
        self: &std::sync::Arc<Self>,
        principal: &keyledger_core::Principal,
    ) -> Result<StreamSlot, &'static str> {
        let mut open = self.open.lock().expect("no holder panics");
        let (total, by_principal) = &mut *open;
        if *total >= self.max {
            return Err("streams");
        }
        let held = by_principal.entry(principal.clone()).or_insert(0);
        if *held >= self.per_principal {
            return Err("principal");
        }
        *held += 1;
        *total += 1;
        Ok(StreamSlot {
            slots: std::sync::Arc::clone(self),
            principal: principal.clone(),
        })
    }

    /// Streams open now.
    pub fn open_now(&self) -> u32 {
        self.open.lock().expect("no holder panics").0
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().expect("no holder panics");
        let (total, by_principal) = &mut *open;
        *total -= 1;
        if let Some(held) = by_principal.get_mut(&self.principal) {
            *held -= 1;
            if *held == 0 {
                by_principal.remove(&self.principal);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(per_address: u32, per_key: u32, burst: u32) -> ThrottlePolicy {
        ThrottlePolicy {
            per_address,
            per_key,
            burst,
        }
    }

    #[test]
    fn streams_are_bounded_in_all_and_by_principal_and_given_back() {
        let slots = std::sync::Arc::new(StreamSlots::new(3, 2));
        let (rita, vic) = (
            keyledger_core::Principal::new("rita").unwrap(),
            keyledger_core::Principal::new("vic").unwrap(),
        );
        let first = slots.open(&rita).unwrap();
        let _second = slots.open(&rita).unwrap();
        assert_eq!(slots.open(&rita).unwrap_err(), "principal");
        let _third = slots.open(&vic).unwrap();
        assert_eq!(slots.open(&vic).unwrap_err(), "streams");
        drop(first);
        assert_eq!(slots.open_now(), 2);
        assert!(slots.open(&rita).is_ok());
    }

    #[test]
    fn a_burst_of_refusals_blocks_the_address_and_no_other() {
        let throttle = Throttle::new(policy(1, 0, 3));
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        for _ in 0..3 {
            assert_eq!(throttle.admit(Some(a), None), Ok(()));
            throttle.refused(Some(a), None);
        }
        // The fourth refusal finds the bucket dry.
        throttle.refused(Some(a), None);
        let refused = throttle.admit(Some(a), None).unwrap_err();
        assert_eq!(refused.by, "address");
        assert!(refused.retry_after <= Duration::from_secs(1), "{refused:?}");
        assert_eq!(throttle.admit(Some(b), None), Ok(()));
    }

    #[test]
    fn a_key_is_blocked_whatever_the_address_and_zero_turns_a_bucket_off() {
        let throttle = Throttle::new(policy(0, 2, 2));
        let key = [7; 16];
        for i in 0..3u8 {
            throttle.refused(Some(IpAddr::from([10, 0, 0, i])), Some(&key));
        }
        let refused = throttle.admit(Some("10.9.9.9".parse().unwrap()), Some(&key));
        assert_eq!(refused.unwrap_err().by, "key");
        assert_eq!(throttle.admit(None, Some(&[8; 16])), Ok(()));
        throttle.prune();
        assert!(
            throttle.admit(None, Some(&key)).is_err(),
            "a block outlives a prune"
        );
    }
}
