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
