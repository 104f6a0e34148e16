//! Checkpoints are whole or absent: a write killed before the manifest leaves the previous
//! checkpoint and is cleaned up after; a flipped byte, a foreign tokenizer or changed options
//! are refused by name on resume; the metric lines of steps run again are not duplicated;
//! a stage 1 exported whole and imported into another run trains a prior there.

mod common;

use std::path::Path;

use common::{stage1_steps, tiny_options, tiny_run};
use mxq::MxqConfig;
use mxq::train::{self, Checkpoint, Progress, Run, TrainOptions};

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

fn logged_steps(path: &Path) -> Vec<u64> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["step"].as_u64().unwrap())
        .collect()
}

/// Stage 1 trained (or resumed) in `dir`; the error when it fails.
fn try_stage1(dir: &Path, options: &TrainOptions) -> Result<(), mxq::Error> {
    let (cfg, tok, data) = tiny_run(MxqConfig::tiny());
    let progress = Progress { on_step: &mut |_| {}, on_epoch: &mut |_| {} };
    train::train_stage1(dir, &cfg, &tok, &data, options, &mxq::cpu().autodiff(), progress).map(|_| ())
}

#[test]
fn a_killed_checkpoint_write_leaves_the_previous_one_whole_and_is_cleaned_up() {
    let (cfg, tok, data) = tiny_run(MxqConfig::tiny());
    let dir = tempfile::tempdir().unwrap();
    let s1 = dir.path().join("s1");
    let options = |steps| TrainOptions { checkpoint_every: 2, log_every: 1, ..tiny_options(steps) };
    stage1_steps(&s1, &cfg, &tok, &data, &options(4));
    assert_eq!(
        listing(&s1),
        ["metrics.jsonl", "model-00000004.bpk", "optim-00000004.bpk", "state.json", "steps.jsonl"]
    );
    // a kill while the step-6 checkpoint was written: its weights (one torn) and a temp file
    // are there, its manifest is not — and the log ran ahead to step 6
    let model = std::fs::read(s1.join("model-00000004.bpk")).unwrap();
    std::fs::write(s1.join("model-00000006.bpk"), &model[..model.len() / 2]).unwrap();
    std::fs::write(s1.join(".optim-00000006.bpk.4242.tmp"), b"half").unwrap();
    let mut steps = std::fs::read_to_string(s1.join("steps.jsonl")).unwrap();
    for step in [5, 6] {
        steps.push_str(&format!("{{\"stage\":\"stage1\",\"epoch\":0,\"step\":{step},\"seconds\":1,\"items_per_second\":1,\"metrics\":{{}}}}\n"));
    }
    steps.push_str("{\"stage\":\"stage1\",\"ep"); // torn by the kill
    std::fs::write(s1.join("steps.jsonl"), steps).unwrap();

    let resumed = stage1_steps(&s1, &cfg, &tok, &data, &options(6));
    assert_eq!(resumed.iter().map(|r| r.step).collect::<Vec<_>>(), [5, 6], "resumed from the whole step-4 checkpoint");
    assert_eq!(logged_steps(&s1.join("steps.jsonl")), [1, 2, 3, 4, 5, 6], "each step logged once");
    assert_eq!(
        listing(&s1),
        ["metrics.jsonl", "model-00000006.bpk", "optim-00000006.bpk", "state.json", "steps.jsonl"],
        "the torn file was replaced, the temp file and step 4's files removed"
    );
    let state = Checkpoint::new(&s1).state().unwrap();
    assert_eq!((state.step, state.files.len()), (6, 2));
    train::stage1::load_stage1(&s1, &mxq::cpu()).expect("the checkpoint loads");
}

#[test]
fn a_corrupted_or_foreign_checkpoint_and_changed_options_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let s1 = dir.path().join("s1");
    try_stage1(&s1, &tiny_options(2)).unwrap();
    // changed options: each named with the run's value; --epochs and --max-steps may change
    let err = try_stage1(&s1, &TrainOptions { learning_rate: 0.5, batch_size: 4, ..tiny_options(3) }).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("learning_rate: 0.5 (the run's: 0.002)") && msg.contains("batch_size: 4 (the run's: 8)"),
        "{msg}"
    );
    // one flipped byte in the model's weights
    let state = Checkpoint::new(&s1).state().unwrap();
    let model = s1.join(&state.files[0].name);
    let mut bytes = std::fs::read(&model).unwrap();
    let at = bytes.len() - 10;
    bytes[at] ^= 0x40;
    std::fs::write(&model, &bytes).unwrap();
    let msg = try_stage1(&s1, &tiny_options(3)).unwrap_err().to_string();
    assert!(msg.contains("model-00000002.bpk: its sha256 does not match"), "{msg}");
    let msg = train::stage1::load_stage1(&s1, &mxq::cpu()).unwrap_err().to_string();
    assert!(msg.contains("sha256"), "{msg}");

    // a run folder whose tokenizer.json is another run's: named, not a panic mid-step
    let run = Run::new(dir.path().join("run"));
    let (cfg, tok, data) = tiny_run(MxqConfig::tiny());
    let progress = Progress { on_step: &mut |_| {}, on_epoch: &mut |_| {} };
    let device = mxq::cpu().autodiff();
    train::train_stage1(&run.stage1_dir(), &cfg, &tok, &data, &tiny_options(1), &device, progress).unwrap();
    let other = common::tokenizer(&common::pairs(20)[..3]);
    std::fs::write(run.tokenizer_path(), other.to_json()).unwrap();
    let setup = train::Stage1Setup {
        config: train::ConfigSource::Preset("tiny".into()),
        variant: "mxq".into(),
        vocab_size: 128,
        token_length: 64,
    };
    let msg = run.prepare_stage1(&common::pairs(4), &setup, true).unwrap_err().to_string();
    assert!(msg.contains("is not the tokenizer stage 1's checkpoint recorded"), "{msg}");
}

#[test]
fn a_stage1_exported_whole_and_imported_encodes_alike_and_trains_a_prior() {
    let (cfg, tok, data) = tiny_run(MxqConfig::tiny());
    let dir = tempfile::tempdir().unwrap();
    let source = Run::new(dir.path().join("source"));
    stage1_steps(&source.stage1_dir(), &cfg, &tok, &data, &tiny_options(3));
    std::fs::write(source.tokenizer_path(), tok.to_json()).unwrap();
    let bytes = source.export_stage1(mxq::bundle::Precision::F32, &mxq::cpu()).unwrap();
    let msg = mxq::bundle::load(&bytes, &mxq::cpu(), Default::default()).unwrap_err().to_string();
    assert!(msg.contains("not a bundle"), "{msg}");

    let target = Run::new(dir.path().join("target"));
    let state = target.import_stage1(&bytes, &mxq::cpu()).unwrap();
    assert_eq!((state.step, state.finished, state.options.batch_size), (3, true, 8));
    assert!(target.import_stage1(&bytes, &mxq::cpu()).is_err(), "a run with a stage 1 is not overwritten");
    let (a, _) = source.stage1(&mxq::cpu()).unwrap();
    let (b, _) = target.stage1(&mxq::cpu()).unwrap();
    let (ca, cb) =
        (train::encode_sequences(&a, &data, 8, &mxq::cpu()), train::encode_sequences(&b, &data, 8, &mxq::cpu()));
    assert_eq!(ca.codes, cb.codes, "the imported stage 1 gives the run's codes");
    // the imported stage 1 has no optimizer state: resuming it is refused by name
    let msg = try_stage1(&target.stage1_dir(), &tiny_options(4)).unwrap_err().to_string();
    assert!(msg.contains("cannot be resumed"), "{msg}");
    let losses = common::prior_losses(&target.prior_dir(), &cfg, &tok, &cb, &tiny_options(3));
    assert_eq!(losses.len(), 3);
}
