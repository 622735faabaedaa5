//! The load generator in a small configuration: every scenario against the real server, checking
//! correctness (every device converges, downloads are complete, streams are poked, files arrive
//! intact), never timing. The figures come from `loadgen` runs (BENCHMARKS.md).

use veldwerk_tests::{
    db_test,
    loadgen::{self, SCENARIOS, Sizes, Target},
};

db_test!(async fn every_load_scenario_converges_in_a_small_configuration(app) with |config| {
    // One address plays every phone.
    config.rate_limit.per_address = 1_000_000;
    config.rate_limit.per_account = 1_000_000;
}; {
    let target = Target { address: app.address.clone(), server_pid: None };
    for scenario in SCENARIOS {
        let results = loadgen::run(scenario, &target, &Sizes::smoke())
            .await
            .unwrap_or_else(|err| panic!("{scenario}: {err:#}"));
        assert!(
            results.iter().all(|m| m.value.is_finite() && m.value >= 0.0),
            "{scenario}: {results:?}"
        );
    }
});

/// The peer's half of the standard workload (pouchdb-server from npm) in the same small
/// configuration: `loadgen --peer` compares against it, so it must store and return every record.
#[tokio::test]
async fn the_peer_runs_the_standard_workload_in_a_small_configuration() {
    let Some(dir) = crate::fixtures::npm_check_dir("peer", "pouchdb-server") else {
        return;
    };
    let peer = loadgen::couch::Peer::start(&dir)
        .await
        .expect("pouchdb-server starts");
    let results = loadgen::couch::run(&peer.target, &Sizes::smoke())
        .await
        .unwrap_or_else(|err| panic!("the peer's workload: {err:#}"));
    let upload = results
        .iter()
        .find(|m| m.metric == loadgen::standard::metric::UPLOAD)
        .expect("an upload figure");
    assert!(upload.value > 0.0, "{results:?}");
    assert!(
        results
            .iter()
            .any(|m| m.metric == loadgen::standard::metric::PEAK_AT_END),
        "the peer's memory is read from /proc: {results:?}"
    );
}
