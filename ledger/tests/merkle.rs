//! The Merkle core against the RFC 6962 text itself: a naive recursive implementation,
//! written here from the RFC and nothing else, must agree with `ledger::merkle` on every
//! root for sizes 1..=300, on every inclusion path and every consistency proof of the
//! smaller trees; every proof must verify, and any flipped bit or classic forgery must not.

use keyledger_ledger::merkle::*;

fn records(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("record {i}").into_bytes()).collect()
}

/// The largest power of two strictly less than n, by counting (not by `split`).
fn naive_k(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

fn naive_mth(d: &[Vec<u8>]) -> Hash {
    match d.len() {
        0 => *blake3::hash(b"").as_bytes(),
        1 => {
            let mut input = vec![0u8];
            input.extend_from_slice(&d[0]);
            *blake3::hash(&input).as_bytes()
        }
        n => {
            let k = naive_k(n);
            let mut input = vec![1u8];
            input.extend_from_slice(&naive_mth(&d[..k]));
            input.extend_from_slice(&naive_mth(&d[k..]));
            *blake3::hash(&input).as_bytes()
        }
    }
}

fn naive_path(m: usize, d: &[Vec<u8>]) -> Vec<Hash> {
    let n = d.len();
    if n <= 1 {
        return Vec::new();
    }
    let k = naive_k(n);
    if m < k {
        let mut path = naive_path(m, &d[..k]);
        path.push(naive_mth(&d[k..]));
        path
    } else {
        let mut path = naive_path(m - k, &d[k..]);
        path.push(naive_mth(&d[..k]));
        path
    }
}

fn naive_subproof(m: usize, d: &[Vec<u8>], b: bool) -> Vec<Hash> {
    let n = d.len();
    if m == n {
        return if b { Vec::new() } else { vec![naive_mth(d)] };
    }
    let k = naive_k(n);
    if m <= k {
        let mut proof = naive_subproof(m, &d[..k], b);
        proof.push(naive_mth(&d[k..]));
        proof
    } else {
        let mut proof = naive_subproof(m - k, &d[k..], false);
        proof.push(naive_mth(&d[..k]));
        proof
    }
}

fn tree(d: &[Vec<u8>]) -> MemoryTree {
    MemoryTree {
        leaves: d.iter().map(|r| leaf_hash(r)).collect(),
    }
}

#[test]
fn roots_and_sample_paths_match_the_rfc_for_every_size_up_to_300() {
    let data = records(300);
    let full = tree(&data);
    for size in 1..=300u64 {
        let d = &data[..size as usize];
        let expected = naive_mth(d);
        assert_eq!(root(&full, size).unwrap(), expected, "root of {size}");
        for index in [0, size / 2, size - 1] {
            let path = inclusion_path(&full, index, size).unwrap();
            assert_eq!(
                path,
                naive_path(index as usize, d),
                "path {index} of {size}"
            );
            assert!(verify_inclusion(
                index,
                size,
                &full.leaves[index as usize],
                &path,
                &expected
            ));
        }
    }
    assert_eq!(root(&full, 0).unwrap(), naive_mth(&[]));
}

#[test]
fn every_leaf_and_every_consistency_pair_up_to_64_verify() {
    let data = records(64);
    let full = tree(&data);
    for size in 1..=64u64 {
        let d = &data[..size as usize];
        let root_n = naive_mth(d);
        for index in 0..size {
            let path = inclusion_path(&full, index, size).unwrap();
            assert_eq!(path, naive_path(index as usize, d));
            assert!(
                verify_inclusion(index, size, &full.leaves[index as usize], &path, &root_n),
                "{index}/{size}"
            );
        }
        for from in 1..=size {
            let proof = consistency_path(&full, from, size).unwrap();
            assert_eq!(
                proof,
                naive_subproof(from as usize, d, true),
                "consistency {from}..{size}"
            );
            let root_m = naive_mth(&data[..from as usize]);
            assert!(
                verify_consistency(from, size, &root_m, &root_n, &proof),
                "{from}..{size}"
            );
        }
    }
}

fn flip(hash: &Hash, bit: usize) -> Hash {
    let mut flipped = *hash;
    flipped[bit / 8] ^= 1 << (bit % 8);
    flipped
}

#[test]
fn any_flipped_bit_in_a_proof_root_or_leaf_fails() {
    let data = records(45);
    let full = tree(&data);
    let (index, size) = (13u64, 45u64);
    let root_n = root(&full, size).unwrap();
    let leaf = full.leaves[index as usize];
    let path = inclusion_path(&full, index, size).unwrap();
    for bit in (0..256).step_by(7) {
        assert!(!verify_inclusion(
            index,
            size,
            &flip(&leaf, bit),
            &path,
            &root_n
        ));
        assert!(!verify_inclusion(
            index,
            size,
            &leaf,
            &path,
            &flip(&root_n, bit)
        ));
        for i in 0..path.len() {
            let mut forged = path.clone();
            forged[i] = flip(&forged[i], bit);
            assert!(!verify_inclusion(index, size, &leaf, &forged, &root_n));
        }
    }
    let root_m = root(&full, 20).unwrap();
    let proof = consistency_path(&full, 20, size).unwrap();
    for bit in (0..256).step_by(5) {
        assert!(!verify_consistency(
            20,
            size,
            &flip(&root_m, bit),
            &root_n,
            &proof
        ));
        assert!(!verify_consistency(
            20,
            size,
            &root_m,
            &flip(&root_n, bit),
            &proof
        ));
        for i in 0..proof.len() {
            let mut forged = proof.clone();
            forged[i] = flip(&forged[i], bit);
            assert!(!verify_consistency(20, size, &root_m, &root_n, &forged));
        }
    }
}

#[test]
fn the_classic_forgeries_are_rejected() {
    let data = records(40);
    let full = tree(&data);
    let (m, n) = (11u64, 40u64);
    let (root_m, root_n) = (root(&full, m).unwrap(), root(&full, n).unwrap());
    let proof = consistency_path(&full, m, n).unwrap();
    assert!(verify_consistency(m, n, &root_m, &root_n, &proof));
    // Wrong length: one hash too many or too few.
    let mut longer = proof.clone();
    longer.push(root_m);
    assert!(!verify_consistency(m, n, &root_m, &root_n, &longer));
    assert!(!verify_consistency(
        m,
        n,
        &root_m,
        &root_n,
        &proof[..proof.len() - 1]
    ));
    // Garbage before or after a valid proof.
    let mut prefixed = vec![[7u8; 32]];
    prefixed.extend_from_slice(&proof);
    assert!(!verify_consistency(m, n, &root_m, &root_n, &prefixed));
    let mut suffixed = proof.clone();
    suffixed.push([7u8; 32]);
    assert!(!verify_consistency(m, n, &root_m, &root_n, &suffixed));
    // Between equal sizes only the empty proof is valid.
    assert!(verify_consistency(n, n, &root_n, &root_n, &[]));
    assert!(!verify_consistency(n, n, &root_n, &root_n, &[root_n]));
    // Size 0 and reversed sizes prove nothing, and cannot be asked for.
    assert!(!verify_consistency(0, n, &empty_root(), &root_n, &proof));
    assert!(!verify_consistency(n, m, &root_n, &root_m, &proof));
    assert_eq!(
        consistency_path(&full, 0, n),
        Err(ProofError::BadSizes { from: 0, to: n })
    );
    // Inclusion: a path of the wrong length, or for a leaf outside the tree.
    let path = inclusion_path(&full, 5, n).unwrap();
    let leaf = full.leaves[5];
    assert!(!verify_inclusion(
        5,
        n,
        &leaf,
        &path[..path.len() - 1],
        &root_n
    ));
    let mut extended = path.clone();
    extended.push(root_n);
    assert!(!verify_inclusion(5, n, &leaf, &extended, &root_n));
    assert!(!verify_inclusion(n, n, &leaf, &path, &root_n));
    assert_eq!(
        inclusion_path(&full, n, n),
        Err(ProofError::NoSuchLeaf { index: n, size: n })
    );
    // A proof for one tree does not verify against a tree that differs in one leaf.
    let mut altered = data.clone();
    altered[3] = b"altered".to_vec();
    let altered_root = root(&tree(&altered), n).unwrap();
    assert!(!verify_consistency(m, n, &root_m, &altered_root, &proof));
}

/// The streaming root (used by `verify-export --checkpoint`) equals the RFC's tree hash at
/// every size, including 0.
#[test]
fn the_root_accumulator_matches_the_rfc_for_every_size_up_to_300() {
    let d = records(300);
    let mut acc = RootAccumulator::default();
    assert_eq!(acc.root(), empty_root());
    for n in 1..=300 {
        acc.push(&d[n - 1]);
        assert_eq!(acc.size(), n as u64);
        assert_eq!(acc.root(), naive_mth(&d[..n]), "size {n}");
    }
}

/// A multi-proof of any subset of leaves verifies, is no longer than the separate paths
/// together, and fails for a changed leaf, index, path hash, root, or a path with a hash
/// too many or too few.
#[test]
fn multi_proofs_of_any_subset_verify_and_every_change_fails() {
    use keyledger_ledger::merkle::{multi_inclusion_path, verify_multi_inclusion};
    use proptest::prelude::*;
    let mut runner = proptest::test_runner::TestRunner::default();
    let cases = (1usize..80)
        .prop_flat_map(|n| (Just(n), proptest::collection::btree_set(0..n as u64, 1..=n)));
    runner
        .run(&cases, |(n, chosen)| {
            let d = records(n);
            let source = tree(&d);
            let size = n as u64;
            let root = keyledger_ledger::merkle::root(&source, size).unwrap();
            let indices: Vec<u64> = chosen.into_iter().collect();
            let leaves: Vec<Hash> = indices.iter().map(|&i| leaf_hash(&d[i as usize])).collect();
            let path = multi_inclusion_path(&source, &indices, size).unwrap();
            prop_assert!(verify_multi_inclusion(
                &indices, &leaves, size, &path, &root
            ));
            let separate: usize = indices
                .iter()
                .map(|&i| inclusion_path(&source, i, size).unwrap().len())
                .sum();
            prop_assert!(path.len() <= separate.max(1));
            let mut bad = leaves.clone();
            bad[0] = flip(&bad[0], 3);
            prop_assert!(!verify_multi_inclusion(&indices, &bad, size, &path, &root));
            prop_assert!(!verify_multi_inclusion(
                &indices,
                &leaves,
                size,
                &path,
                &flip(&root, 0)
            ));
            if let Some(first) = path.first() {
                let mut changed = path.clone();
                changed[0] = flip(first, 7);
                prop_assert!(!verify_multi_inclusion(
                    &indices, &leaves, size, &changed, &root
                ));
                prop_assert!(!verify_multi_inclusion(
                    &indices,
                    &leaves,
                    size,
                    &path[1..],
                    &root
                ));
            }
            let mut longer = path.clone();
            longer.push(root);
            prop_assert!(!verify_multi_inclusion(
                &indices, &leaves, size, &longer, &root
            ));
            // Another leaf's index for the same hash.
            if let Some(other) = (0..size).find(|i| !indices.contains(i)) {
                let mut moved = indices.clone();
                moved[0] = other;
                moved.sort_unstable();
                let differs = moved != indices;
                prop_assert!(
                    !differs || !verify_multi_inclusion(&moved, &leaves, size, &path, &root)
                );
            }
            Ok(())
        })
        .unwrap();
    // Indices out of order or out of the tree are refused, never a panic.
    let source = tree(&records(5));
    assert!(multi_inclusion_path(&source, &[3, 1], 5).is_err());
    assert!(multi_inclusion_path(&source, &[1, 1], 5).is_err());
    assert!(multi_inclusion_path(&source, &[5], 5).is_err());
    assert!(!verify_multi_inclusion(&[], &[], 5, &[], &[0; 32]));
}
