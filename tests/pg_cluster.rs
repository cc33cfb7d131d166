//! `scripts/pg-cluster.sh`, the PostgreSQL pair the replicated store is tested against
//! (issue 15): a real primary and a real synchronous standby on loopback. A commit on the
//! primary is on the standby when acknowledged; after the primary's postmaster is killed and
//! the standby promoted, every acknowledged row is there and the new primary takes writes.
//!
//! Needs PostgreSQL's binaries (the script installs Debian's package as root when they are
//! missing). Without them and not as root, the test says it was skipped and how to run it;
//! in CI (`CI` set) it never skips.

use crate::support;

use support::pg::{skip_without_postgres, Cluster};

#[test]
fn the_cluster_script_runs_a_synchronous_pair_that_survives_losing_its_primary() {
    if skip_without_postgres("the cluster script") {
        return;
    }
    let cluster = Cluster::start();
    let said = cluster.must("url");
    let url = said.lines().find(|l| l.starts_with("postgres://")).unwrap();
    assert_eq!(
        url,
        format!(
            "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/keyledger?target_session_attrs=read-write",
            cluster.primary, cluster.standby
        )
    );
    let (_, status) = cluster.run("status");
    assert!(
        status.contains(&format!("127.0.0.1:{} primary", cluster.primary)),
        "{status}"
    );
    assert!(
        status.contains(&format!("127.0.0.1:{} standby", cluster.standby)),
        "{status}"
    );
    assert!(status.contains("standby1 sync"), "{status}");
    // Acknowledged on the primary means on the standby (synchronous_commit = on).
    cluster
        .psql(cluster.primary, "create table acked (n int primary key)")
        .unwrap();
    for n in 1..=50 {
        cluster
            .psql(cluster.primary, &format!("insert into acked values ({n})"))
            .unwrap();
    }
    let replica = cluster
        .psql(cluster.standby, "select count(*) from acked")
        .unwrap();
    assert_eq!(replica, "50");
    assert!(
        cluster
            .psql(cluster.standby, "insert into acked values (99)")
            .is_err(),
        "a standby refuses writes"
    );
    // The primary's machine dies; the standby takes over with every acknowledged row.
    let (ok, said) = cluster.run("kill-primary");
    assert!(ok, "kill-primary: {said}");
    let (ok, said) = cluster.run("promote");
    assert!(ok, "promote: {said}");
    let promoted = cluster
        .psql(cluster.standby, "select count(*) from acked")
        .unwrap();
    assert_eq!(promoted, "50", "no acknowledged row lost");
    cluster
        .psql(cluster.standby, "insert into acked values (51)")
        .unwrap();
    let (_, status) = cluster.run("status");
    assert!(
        status.contains(&format!("127.0.0.1:{} down", cluster.primary)),
        "{status}"
    );
    assert!(
        status.contains(&format!("127.0.0.1:{} primary", cluster.standby)),
        "{status}"
    );
    let (ok, said) = cluster.run("stop");
    assert!(ok, "stop: {said}");
    assert!(
        !cluster.dir.exists(),
        "stop removes the cluster's directory"
    );
}
