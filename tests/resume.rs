//! A run stopped mid-epoch and resumed ends where an uninterrupted one does. In a test
//! binary of its own: burn seeds one random stream per device for the whole process, which
//! other tests running beside it would draw from between a run's seed and its model's init.

mod common;

use std::path::Path;

use common::{prior_losses, stage1_steps, tiny_options, tiny_run};
use mxq::MxqConfig;
use mxq::train::{self, TrainOptions};

/// Weights of a module as (name, bytes), for exact comparisons.
fn weights<M: burn::store::ModuleSnapshot>(module: &M) -> Vec<(String, Vec<u8>)> {
    mxq::weights::module_tensors(module).unwrap().into_iter().map(|(n, t)| (n, t.data)).collect()
}

/// On one thread (no parallel sums whose order varies), a run stopped mid-epoch and resumed
/// ends with the same weights, bit for bit, as one that ran through: the checkpoint holds
/// everything a step depends on (weights, AdamW state, batch position, the codebook
/// upkeep's code counts — dead-code restarts fall on both sides of the cut here).
#[test]
fn an_interrupted_and_resumed_run_ends_with_the_weights_of_an_uninterrupted_one() {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    pool.install(|| {
        let mut tiny = MxqConfig::tiny();
        tiny.stage1.codebook.size = 256; // more codes than a few batches take: some die
        let (cfg, tok, data) = tiny_run(tiny);
        let dir = tempfile::tempdir().unwrap();
        let options = |steps| TrainOptions { restart_dead_every: 2, ..tiny_options(steps) };
        let (whole, cut) = (dir.path().join("whole"), dir.path().join("cut"));
        stage1_steps(&whole.join("s1"), &cfg, &tok, &data, &options(8));
        stage1_steps(&cut.join("s1"), &cfg, &tok, &data, &options(3)); // stops inside epoch 1
        let resumed = stage1_steps(&cut.join("s1"), &cfg, &tok, &data, &options(8));
        assert_eq!(resumed.first().map(|r| r.step), Some(4));
        let metrics = std::fs::read_to_string(whole.join("s1/metrics.jsonl")).unwrap();
        let restarted: f64 = metrics
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["metrics"]["restarted_codes"].as_f64().unwrap()
            })
            .sum();
        assert!(restarted > 0.0, "no code was restarted: the cut does not cross a restart\n{metrics}");
        let load = |run: &Path| train::stage1::load_stage1(&run.join("s1"), &mxq::cpu()).unwrap().0;
        let (a, b) = (load(&whole), load(&cut));
        assert!(weights(&a) == weights(&b), "stage 1 resumed at step 3 differs from the uninterrupted run");

        let sequences = train::encode_sequences(&a, &data, 8, &mxq::cpu());
        prior_losses(&whole.join("prior"), &cfg, &tok, &sequences, &tiny_options(8));
        prior_losses(&cut.join("prior"), &cfg, &tok, &sequences, &tiny_options(3));
        prior_losses(&cut.join("prior"), &cfg, &tok, &sequences, &tiny_options(8));
        let load = |run: &Path| train::prior::load_prior(&run.join("prior"), &mxq::cpu()).unwrap().0;
        assert!(weights(&load(&whole)) == weights(&load(&cut)), "the resumed prior differs");
    });
}
