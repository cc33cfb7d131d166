//! The Merkle tree over the log, in the scheme of RFC 6962 / RFC 9162 §2 with BLAKE3:
//!
//! ```text
//! leaf(n)        = BLAKE3(0x00 || record_bytes(n))          (leaf index n-1 holds seq n)
//! node(l, r)     = BLAKE3(0x01 || l || r)
//! MTH({})        = BLAKE3("")
//! MTH(D[0:n])    = node(MTH(D[0:k]), MTH(D[k:n])), k the largest power of two < n
//! ```
//!
//! Proofs are computed over any [`RangeHash`] source — a plain list of leaf hashes here and
//! in tests, stored subtree hashes for a ledger — so the proof code is written once. The
//! verifiers follow RFC 9162 §2.1.3.2 and §2.1.4.2 and need nothing but hashes.

/// A tree hash.
pub type Hash = [u8; 32];

pub fn leaf_hash(record: &[u8]) -> Hash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&[0x00]);
    hasher.update(record);
    *hasher.finalize().as_bytes()
}

pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&[0x01]);
    hasher.update(left);
    hasher.update(right);
    *hasher.finalize().as_bytes()
}

/// MTH of the empty tree.
pub fn empty_root() -> Hash {
    *blake3::hash(b"").as_bytes()
}

/// The largest power of two strictly smaller than `n` (n >= 2).
pub fn split(n: u64) -> u64 {
    debug_assert!(n >= 2, "only trees of two or more leaves split");
    1 << (63 - (n - 1).leading_zeros())
}

/// Why a proof cannot be produced.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("leaf index {index} is not in a tree of {size} leaves")]
    NoSuchLeaf { index: u64, size: u64 },
    #[error("a consistency proof needs 0 < from <= to, got from {from} to {to}")]
    BadSizes { from: u64, to: u64 },
    #[error("the tree has {have} leaves; {want} were asked for")]
    TooLarge { want: u64, have: u64 },
    #[error("cannot read the tree: {0}")]
    Source(String),
}

/// Anything that can give the tree hash of the leaves `[start, end)`.
pub trait RangeHash {
    fn range_hash(&self, start: u64, end: u64) -> Result<Hash, ProofError>;
}

/// Leaf hashes held in memory; range hashes computed recursively.
#[derive(Clone, Debug, Default)]
pub struct MemoryTree {
    pub leaves: Vec<Hash>,
}

impl RangeHash for MemoryTree {
    fn range_hash(&self, start: u64, end: u64) -> Result<Hash, ProofError> {
        let have = self.leaves.len() as u64;
        if end > have {
            return Err(ProofError::TooLarge { want: end, have });
        }
        Ok(mth(&self.leaves[start as usize..end as usize]))
    }
}

fn mth(leaves: &[Hash]) -> Hash {
    match leaves {
        [] => empty_root(),
        [one] => *one,
        _ => {
            let k = split(leaves.len() as u64) as usize;
            node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

/// The RFC 6962 root of leaves appended one by one, in O(log n) memory: a stack of perfect
/// subtrees, largest first, merged as a binary counter carries; the root folds them from
/// the right, which is what the tree hash's split at the largest power of two below n gives.
#[derive(Clone, Debug, Default)]
pub struct RootAccumulator {
    /// `(height, hash)` of each perfect subtree, heights strictly decreasing.
    stack: Vec<(u32, Hash)>,
    size: u64,
}

impl RootAccumulator {
    pub fn push(&mut self, record: &[u8]) {
        let mut node = (0u32, leaf_hash(record));
        while let Some(&(height, left)) = self.stack.last() {
            if height != node.0 {
                break;
            }
            self.stack.pop();
            node = (height + 1, node_hash(&left, &node.1));
        }
        self.stack.push(node);
        self.size += 1;
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The tree hash of every leaf pushed so far.
    pub fn root(&self) -> Hash {
        let mut nodes = self.stack.iter().rev();
        let Some(&(_, mut root)) = nodes.next() else {
            return empty_root();
        };
        for (_, left) in nodes {
            root = node_hash(left, &root);
        }
        root
    }
}

/// The root of the first `size` leaves.
pub fn root(source: &impl RangeHash, size: u64) -> Result<Hash, ProofError> {
    if size == 0 {
        return Ok(empty_root());
    }
    source.range_hash(0, size)
}

/// The audit path of leaf `index` in the tree of `size` leaves (RFC 6962 §2.1.1).
pub fn inclusion_path(
    source: &impl RangeHash,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, ProofError> {
    if index >= size {
        return Err(ProofError::NoSuchLeaf { index, size });
    }
    let mut path = Vec::new();
    inclusion(source, index, 0, size, &mut path)?;
    Ok(path)
}

/// PATH(m, D[start:end]), appended leaf-side first.
fn inclusion(
    source: &impl RangeHash,
    m: u64,
    start: u64,
    end: u64,
    path: &mut Vec<Hash>,
) -> Result<(), ProofError> {
    let n = end - start;
    if n <= 1 {
        return Ok(());
    }
    let k = split(n);
    if m < k {
        inclusion(source, m, start, start + k, path)?;
        path.push(source.range_hash(start + k, end)?);
    } else {
        inclusion(source, m - k, start + k, end, path)?;
        path.push(source.range_hash(start, start + k)?);
    }
    Ok(())
}

/// The consistency proof between the trees of `from` and `to` leaves (RFC 6962 §2.1.2).
pub fn consistency_path(
    source: &impl RangeHash,
    from: u64,
    to: u64,
) -> Result<Vec<Hash>, ProofError> {
    if from == 0 || from > to {
        return Err(ProofError::BadSizes { from, to });
    }
    let mut path = Vec::new();
    subproof(source, from, 0, to, true, &mut path)?;
    Ok(path)
}

/// SUBPROOF(m, D[start:end], whole).
fn subproof(
    source: &impl RangeHash,
    m: u64,
    start: u64,
    end: u64,
    whole: bool,
    path: &mut Vec<Hash>,
) -> Result<(), ProofError> {
    let n = end - start;
    if m == n {
        if !whole {
            path.push(source.range_hash(start, end)?);
        }
        return Ok(());
    }
    let k = split(n);
    if m <= k {
        subproof(source, m, start, start + k, whole, path)?;
        path.push(source.range_hash(start + k, end)?);
    } else {
        subproof(source, m - k, start + k, end, false, path)?;
        path.push(source.range_hash(start, start + k)?);
    }
    Ok(())
}

/// RFC 9162 §2.1.3.2: does `path` prove `leaf` at `index` in the tree of `size` with `root`?
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, path: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in path {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && r == *root
}

/// A proof that several leaves are in the tree of `size` leaves at once (a statement's
/// events): the hashes of the subtrees that hold none of `indices`, in the order a
/// left-to-right walk of the tree meets them. Shared siblings are given once, so it is
/// never longer than the separate paths together, and much shorter for neighbours.
/// `indices` must be strictly increasing and below `size`.
pub fn multi_inclusion_path(
    source: &impl RangeHash,
    indices: &[u64],
    size: u64,
) -> Result<Vec<Hash>, ProofError> {
    if let Some(bad) = indices
        .iter()
        .zip(indices.iter().skip(1))
        .find(|(a, b)| a >= b)
        .map(|(_, b)| *b)
        .or(indices.last().copied().filter(|&last| last >= size))
    {
        return Err(ProofError::NoSuchLeaf { index: bad, size });
    }
    let mut path = Vec::new();
    if !indices.is_empty() {
        multi_walk(source, 0, size, indices, &mut path)?;
    }
    Ok(path)
}

/// The subtree `[start, end)`: its hash when none of `wanted` is in it, else its halves.
fn multi_walk(
    source: &impl RangeHash,
    start: u64,
    end: u64,
    wanted: &[u64],
    path: &mut Vec<Hash>,
) -> Result<(), ProofError> {
    if wanted.is_empty() {
        path.push(source.range_hash(start, end)?);
        return Ok(());
    }
    if end - start == 1 {
        return Ok(());
    }
    let middle = start + split(end - start);
    let cut = wanted.partition_point(|&i| i < middle);
    multi_walk(source, start, middle, &wanted[..cut], path)?;
    multi_walk(source, middle, end, &wanted[cut..], path)
}

/// Does `path` prove that `leaves` are the leaves at `indices` (strictly increasing) of the
/// tree of `size` leaves whose root is `root`? Every hash of the path must be used.
pub fn verify_multi_inclusion(
    indices: &[u64],
    leaves: &[Hash],
    size: u64,
    path: &[Hash],
    root: &Hash,
) -> bool {
    let increasing = indices.windows(2).all(|w| w[0] < w[1]);
    if indices.is_empty()
        || indices.len() != leaves.len()
        || !increasing
        || indices.last().is_some_and(|&i| i >= size)
    {
        return false;
    }
    let mut given = (leaves.iter(), path.iter());
    let computed = multi_root(0, size, indices, &mut given);
    computed.as_ref() == Some(root) && given.0.next().is_none() && given.1.next().is_none()
}

type Given<'a> = (std::slice::Iter<'a, Hash>, std::slice::Iter<'a, Hash>);

/// The hash of the subtree `[start, end)` from the given leaves and path hashes, taken in
/// the order `multi_walk` wrote them.
fn multi_root(start: u64, end: u64, wanted: &[u64], given: &mut Given<'_>) -> Option<Hash> {
    if wanted.is_empty() {
        return given.1.next().copied();
    }
    if end - start == 1 {
        return given.0.next().copied();
    }
    let middle = start + split(end - start);
    let cut = wanted.partition_point(|&i| i < middle);
    let left = multi_root(start, middle, &wanted[..cut], given)?;
    let right = multi_root(middle, end, &wanted[cut..], given)?;
    Some(node_hash(&left, &right))
}

/// RFC 9162 §2.1.4.2: does `path` prove the tree of `from` leaves (root `from_root`) a
/// prefix of the tree of `to` leaves (root `to_root`)?
pub fn verify_consistency(
    from: u64,
    to: u64,
    from_root: &Hash,
    to_root: &Hash,
    path: &[Hash],
) -> bool {
    if from == 0 || from > to {
        return false;
    }
    if from == to {
        return path.is_empty() && from_root == to_root;
    }
    if path.is_empty() {
        return false;
    }
    let mut path = path.to_vec();
    if from.is_power_of_two() {
        path.insert(0, *from_root);
    }
    let (mut f, mut s) = (from - 1, to - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    fr == *from_root && sr == *to_root && s == 0
}
