//! The hash maps of the state and of the read models that share its facts.

/// The maps of the state are keyed by names clients choose (machine ids, orgs, hosts).
/// foldhash's quality hasher is seeded per process, like std's SipHash default, so a client
/// cannot precompute colliding names, and costs a fraction of SipHash per probe (an
/// activation makes several).
pub type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::quality::RandomState>;
/// See [`HashMap`].
pub type HashSet<K> = std::collections::HashSet<K, foldhash::quality::RandomState>;
