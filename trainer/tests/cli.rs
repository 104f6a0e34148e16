//! The `mxq` binary end to end on a tiny config: data → stage 1 → prior → export →
//! generate, with resume and the errors a user meets first.

use std::path::Path;
use std::process::Command;

fn mxq(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mxq")).args(args).output().expect("mxq runs")
}

fn ok(args: &[&str]) -> String {
    let out = mxq(args);
    assert!(out.status.success(), "mxq {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn check_pairs(dir: &Path, n: usize) {
    let listing = std::fs::read_to_string(dir.join("pairs.jsonl")).unwrap();
    assert_eq!(listing.lines().count(), n);
    for (i, line) in listing.lines().enumerate() {
        let rec: serde_json::Value = serde_json::from_str(line).unwrap();
        let png = dir.join(rec["image"].as_str().unwrap());
        let img = image::open(&png).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (64, 64));
        let txt = std::fs::read_to_string(dir.join(format!("{i:05}.txt"))).unwrap();
        assert_eq!(txt.trim_end_matches('\n'), rec["caption"].as_str().unwrap());
    }
}

#[test]
fn tiny_pipeline_from_data_to_generated_pairs() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |s: &str| tmp.path().join(s).to_string_lossy().into_owned();
    ok(&["data", "caption-mnist", "--split", "train", "--count", "64", "--out", &p("train")]);
    check_pairs(&tmp.path().join("train"), 64);
    let report: serde_json::Value = serde_json::from_str(&ok(&["eval", "--pairs", &p("train"), "--json"])).unwrap();
    assert_eq!(report["validity_pct"], 100.0, "real pairs are valid: {report}");
    assert_eq!(report["layout_colour_consistency_pct"], 100.0, "{report}");
    assert!(report["consistency_pct"].as_f64().unwrap() >= 90.0, "the judge reads real pairs: {report}");
    assert!(report["unit_accuracy_pct"].as_f64().unwrap() >= 95.0, "{report}");
    let train_distance = report["frechet_distance"].as_f64().unwrap();
    // the reference is the test split's first pairs: judging exactly those gives distance 0
    ok(&["data", "caption-mnist", "--split", "test", "--count", "64", "--out", &p("test")]);
    let report: serde_json::Value = serde_json::from_str(&ok(&["eval", "--pairs", &p("test"), "--json"])).unwrap();
    let test_distance = report["frechet_distance"].as_f64().unwrap();
    assert!(
        test_distance < 1e-3 && train_distance > 100.0 * test_distance.max(1e-3),
        "{test_distance} {train_distance}"
    );

    let train = ["--data", &p("train"), "--run", &p("run"), "--batch-size", "16", "--epochs", "2"];
    let stage1 = |extra: &[&'static str]| -> Vec<String> {
        ["train", "stage1", "--preset", "tiny"].iter().chain(&train).chain(extra).map(|s| s.to_string()).collect()
    };
    let ok = |args: &[String]| ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let mxq = |args: &[String]| mxq(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let first = mxq(&stage1(&["--max-steps", "3"]));
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(first.status.success() && !stderr.contains("warning"), "Caption MNIST fits as it is: {stderr}");
    let again = mxq(&stage1(&[]));
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("--resume"));
    // a resume keeps the run's config and options: changing one is refused by name, not ignored
    let refused = mxq(&stage1(&["--resume"]));
    assert!(
        !refused.status.success()
            && String::from_utf8_lossy(&refused.stderr).contains("--preset apply to a new run only"),
        "{refused:?}"
    );
    let resume: Vec<String> = ["train", "stage1", "--resume"].iter().chain(&train).map(|s| s.to_string()).collect();
    let with =
        |extra: &[&str]| -> Vec<String> { resume.iter().cloned().chain(extra.iter().map(|s| s.to_string())).collect() };
    let refused = mxq(&with(&["--lr", "0.1"]));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("learning_rate: 0.1 (the run's: 0.0005)"), "{stderr}");
    ok(&with(&[]));
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("run/stage1/state.json")).unwrap()).unwrap();
    assert_eq!(state["step"], 8, "resumed to 2 epochs × 4 steps");
    assert_eq!(state["finished"], true);
    assert_eq!(state["options"]["batch_size"], 16, "the run's batch size, given again");
    // the checkpoint's manifest names its files and sums; nothing else is left beside them
    let files: Vec<String> =
        state["files"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap().into()).collect();
    assert_eq!(files, ["model-00000008.bpk", "optim-00000008.bpk"]);
    let mut listing: Vec<String> = std::fs::read_dir(tmp.path().join("run/stage1"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    listing.sort();
    assert_eq!(listing, ["metrics.jsonl", "model-00000008.bpk", "optim-00000008.bpk", "state.json"]);

    // a whole stage 1 exported and imported into a new run: a prior trains on it there
    ok(&["export", "--run", &p("run"), "--stage1", "--f32", "--out", &p("stage1.mxq")].map(String::from));
    let imported = ok(&["import", "--stage1", &p("stage1.mxq"), "--run", &p("imported")].map(String::from));
    assert!(imported.contains("8 steps"), "{imported}");
    let twice = mxq(&["import", "--stage1", &p("stage1.mxq"), "--run", &p("imported")].map(String::from));
    assert!(!twice.status.success() && String::from_utf8_lossy(&twice.stderr).contains("already holds"), "{twice:?}");
    let not_a_bundle =
        mxq(&["generate", "--bundle", &p("stage1.mxq"), "--count", "1", "--out", &p("x")].map(String::from));
    assert!(String::from_utf8_lossy(&not_a_bundle.stderr).contains("mxq import"), "{not_a_bundle:?}");
    let imported_train: Vec<String> = ["train", "prior", "--data", &p("train"), "--run", &p("imported")]
        .iter()
        .chain(&["--batch-size", "16", "--max-steps", "2", "--layers", "1", "--order", "image-first"])
        .map(|s| s.to_string())
        .collect();
    ok(&imported_train);
    // its codes are kept in prior/ between starts: a resume reads them back; a damaged file
    // is encoded again, not trusted
    let resume_prior = |steps: &str| {
        let resume = ["--resume".to_string(), "--max-steps".into(), steps.into()];
        let args: Vec<String> = imported_train[..6].iter().cloned().chain(resume).collect();
        let out = mxq(&args);
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(resume_prior("3").contains("codes read back, not encoded again"));
    let kept: Vec<_> = std::fs::read_dir(tmp.path().join("imported/prior"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("codes-"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    let bytes = std::fs::read(&kept[0]).unwrap();
    assert_eq!(bytes.len() % (64 * 4), 0, "64 pairs' codes as u32");
    std::fs::write(&kept[0], &bytes[..bytes.len() - 3]).unwrap();
    assert!(resume_prior("4").contains("codes encoded"));
    assert_eq!(std::fs::read(&kept[0]).unwrap(), bytes, "encoded again, the same codes");
    // named by the stage-1 weights, not by the checkpoint file (whose bytes hold burn's random
    // parameter ids): a second import of the same file finds the codes carried over to it
    ok(&["import", "--stage1", &p("stage1.mxq"), "--run", &p("imported2")].map(String::from));
    let carried = tmp.path().join("imported2/prior");
    std::fs::create_dir_all(&carried).unwrap();
    std::fs::copy(&kept[0], carried.join(kept[0].file_name().unwrap())).unwrap();
    let args = ["train", "prior", "--data", &p("train"), "--run", &p("imported2"), "--batch-size", "16"];
    let out = mxq(&args.iter().chain(&["--max-steps", "1"]).map(|s| s.to_string()).collect::<Vec<_>>());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.contains("codes read back, not encoded again"), "{stderr}");

    // the paper's comparison: a variant is recorded in the run's config; a wrong name is named
    let variant = |run: &str, v: &str| -> Vec<String> {
        let args =
            ["train", "stage1", "--preset", "tiny", "--data", &p("train"), "--run", &p(run), "--batch-size", "16"];
        args.iter().chain(&["--variant", v, "--max-steps", "2"]).map(|s| s.to_string()).collect()
    };
    ok(&variant("sep", "separate"));
    let state = std::fs::read_to_string(tmp.path().join("sep/stage1/state.json")).unwrap();
    assert!(state.contains("\"quantizer\": \"separate\""), "{state}");
    let bad = mxq(&variant("bogus", "bogus"));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown variant 'bogus'"));

    // the prior drawing the caption first, with a cosine schedule; both recorded in its checkpoint
    let prior_args =
        ["train", "prior", "--order", "text-first", "--schedule", "cosine", "--layers", "2", "--unconditional", "0.5"];
    ok(&prior_args.iter().chain(&train).map(|s| s.to_string()).collect::<Vec<_>>());
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("run/prior/state.json")).unwrap()).unwrap();
    assert_eq!(state["config"]["prior"]["order"], "text-first", "{state}");
    assert_eq!(state["config"]["prior"]["layers"], 2, "{state}");
    assert_eq!(state["config"]["prior"]["unconditional"], 0.5, "{state}");
    assert_eq!(state["options"]["schedule"], "cosine", "{state}");
    let bad =
        mxq(&["train", "prior", "--order", "sideways"].iter().chain(&train).map(|s| s.to_string()).collect::<Vec<_>>());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not an order"), "{bad:?}");
    // a resumed prior keeps its recorded order: asking for another is an error, not ignored
    let resumed = ["train", "prior", "--resume", "--order", "image-first"];
    let bad = mxq(&resumed.iter().chain(&train).map(|s| s.to_string()).collect::<Vec<_>>());
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("new prior run only"), "{bad:?}");
    let ok = |args: &[&str]| ok(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    ok(&["export", "--run", &p("run"), "--out", &p("tiny.mxq")]);
    // a prior started from a bundle's (fine-tuning) begins where the bundle's ended: after a
    // step at a vanishing learning rate its export samples the bundle's pairs
    ok(&["import", "--stage1", &p("stage1.mxq"), "--run", &p("fine")]);
    let fine = ["train", "prior", "--data", &p("train"), "--run", &p("fine"), "--init-from", &p("tiny.mxq")];
    let step = ["--batch-size", "16", "--max-steps", "1", "--lr", "1e-12", "--warmup-steps", "0"];
    ok(&[&fine[..], &step].concat());
    ok(&["export", "--run", &p("fine"), "--out", &p("fine.mxq")]);
    // … and so does one grown deeper (2 → 3 layers): the new block starts as the identity
    ok(&["import", "--stage1", &p("stage1.mxq"), "--run", &p("deep")]);
    let deep = ["train", "prior", "--data", &p("train"), "--run", &p("deep"), "--init-from", &p("tiny.mxq")];
    ok(&[&deep[..], &["--layers", "3"], &step].concat());
    ok(&["export", "--run", &p("deep"), "--out", &p("deep.mxq")]);
    let deep_state = std::fs::read_to_string(tmp.path().join("deep/prior/state.json")).unwrap();
    let deep_state: serde_json::Value = serde_json::from_str(&deep_state).unwrap();
    assert_eq!(deep_state["config"]["prior"]["layers"], 3, "{deep_state}");
    for bundle in ["tiny.mxq", "fine.mxq", "deep.mxq"] {
        ok(&["generate", "--bundle", &p(bundle), "--count", "3", "--seed", "4", "--out", &p(&format!("{bundle}.gen"))]);
    }
    let listing = |bundle: &str| std::fs::read_to_string(tmp.path().join(format!("{bundle}.gen/pairs.jsonl"))).unwrap();
    assert_eq!(listing("fine.mxq"), listing("tiny.mxq"), "the fine-tuned prior starts as the bundle's");
    assert_eq!(listing("deep.mxq"), listing("tiny.mxq"), "the deepened prior starts as the bundle's");
    // refused: a run on another stage 1 (the codes would mean other things), a new width, fewer layers
    for (run, extra, says) in [
        ("sep", &[][..], "another stage 1"),
        ("fine2", &["--width", "16"][..], "cannot be used with"),
        ("fine", &["--layers", "1"][..], "not shallower"),
    ] {
        let args = ["train", "prior", "--data", &p("train"), "--run", &p(run), "--init-from", &p("tiny.mxq")];
        let refused = mxq(&[&args[..], extra].concat().iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success() && stderr.contains(says), "{run}: {stderr}");
    }
    let out = ok(&[
        "generate",
        "--bundle",
        &p("tiny.mxq"),
        "--count",
        "5",
        "--seed",
        "9",
        "--out",
        &p("gen"),
        "--grid",
        &p("grid.png"),
    ]);
    assert!(out.contains("wrote 5 pairs"));
    check_pairs(&tmp.path().join("gen"), 5);
    assert!(image::open(tmp.path().join("grid.png")).is_ok());
    // same seed, same pairs
    ok(&["generate", "--bundle", &p("tiny.mxq"), "--count", "5", "--seed", "9", "--out", &p("gen2")]);
    assert_eq!(
        std::fs::read(tmp.path().join("gen/pairs.jsonl")).unwrap(),
        std::fs::read(tmp.path().join("gen2/pairs.jsonl")).unwrap()
    );
    assert_eq!(
        std::fs::read(tmp.path().join("gen/00003.png")).unwrap(),
        std::fs::read(tmp.path().join("gen2/00003.png")).unwrap()
    );
    // a second run into the same folder: refused, unless --force, which leaves no orphan
    let again = ["generate", "--bundle", &p("tiny.mxq"), "--count", "3", "--out", &p("gen")];
    let refused = mxq(&again.map(String::from));
    assert!(!refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("--force"), "{refused:?}");
    check_pairs(&tmp.path().join("gen"), 5);
    ok(&again.iter().chain(&["--force"]).copied().collect::<Vec<_>>());
    check_pairs(&tmp.path().join("gen"), 3);
    assert_eq!(std::fs::read_dir(tmp.path().join("gen")).unwrap().count(), 7, "3 pairs and the listing, nothing else");
    // eval from a bundle: generated pairs judged beside real test pairs, with the share of
    // captions copied from the train folder, and the run's stage-1 ceiling
    let args = ["eval", "--bundle", &p("tiny.mxq"), "--count", "8", "--run", &p("run"), "--train", &p("train")];
    let report = ok(&args.iter().chain(&["--json"]).copied().collect::<Vec<_>>());
    let report: serde_json::Value = serde_json::from_str(report.lines().last().unwrap()).unwrap();
    assert_eq!(report["generated"]["pairs"], 8, "{report}");
    assert!(report["generated"]["frechet_distance"].as_f64().is_some(), "{report}");
    assert!(report["generated"]["copied_captions_pct"].as_f64().is_some(), "{report}");
    let shares: f64 = report["generated"]["by_digit_count"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["share_pct"].as_f64().unwrap())
        .sum();
    assert!((shares - 100.0).abs() < 1e-9, "{report}");
    assert!(report["generated"]["digit_count_total_variation"].as_f64().is_some(), "{report}");
    let recon = &report["stage1_reconstruction"]["reconstruction"];
    assert_eq!(recon["pairs"], 8, "{report}");
    assert!(recon["image_mse"].as_f64().unwrap() > 0.0 && recon["live_codes"].as_u64().unwrap() >= 1, "{report}");
    assert!(recon["text_code_bits"].as_f64().unwrap() >= 0.0, "{report}");
    for half in [
        "judged",
        "image_against_true_caption",
        "caption_against_true_image",
        "image_from_caption",
        "caption_from_image",
    ] {
        assert_eq!(report["stage1_reconstruction"][half]["pairs"], 8, "{half}: {report}");
    }
    let kept = report["stage1_reconstruction"]["text_codes_without_image_pct"].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&kept), "{report}");
    // the reconstructed image read with the true caption: every caption valid
    assert_eq!(report["stage1_reconstruction"]["image_against_true_caption"]["validity_pct"], 100.0, "{report}");
    assert_eq!(report["real_test"]["validity_pct"], 100.0, "{report}");
    // images drawn for a caption: the caption-first prior starts from the caption's codes,
    // which the run's own stage 1 (exported as a stage-1 file) encodes
    ok(&["export", "--run", &p("run"), "--stage1", "--out", &p("run-stage1.mxq")]);
    ok(&["export", "--run", &p("sep"), "--stage1", "--out", &p("sep-stage1.mxq")]);
    let first = std::fs::read_to_string(tmp.path().join("train/pairs.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(first.lines().next().unwrap()).unwrap();
    let caption = first["caption"].as_str().unwrap();
    let draw = |stage1: &str, caption: &str, out: &str| {
        let args = ["generate", "--bundle", &p("tiny.mxq"), "--stage1", &p(stage1), "--count", "3"];
        mxq(&args.iter().chain(&["--caption", caption, "--out", &p(out)]).map(|s| s.to_string()).collect::<Vec<_>>())
    };
    let out = draw("run-stage1.mxq", caption, "drawn");
    assert!(out.status.success(), "{out:?}");
    // the encoder file (stage 1's encode half) draws the same images; `mxq import` refuses it
    ok(&["export", "--run", &p("run"), "--encoder", "--out", &p("run-encoder.mxq")]);
    let out = draw("run-encoder.mxq", caption, "drawn-enc");
    assert!(out.status.success(), "{out:?}");
    let png = |dir: &str| std::fs::read(tmp.path().join(dir).join("00002.png")).unwrap();
    assert_eq!(png("drawn-enc"), png("drawn"), "the encoder file encodes the caption as the stage-1 file does");
    let refused = mxq(&["import", "--stage1", &p("run-encoder.mxq"), "--run", &p("enc-run")].map(String::from));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("encoder file"), "{stderr}");
    // guided: the image codes follow the caption's more closely (a prior trained with --unconditional)
    ok(&["generate", "--bundle", &p("tiny.mxq"), "--count", "2", "--guidance", "2", "--out", &p("guided")]);
    check_pairs(&tmp.path().join("guided"), 2);
    check_pairs(&tmp.path().join("drawn"), 3);
    let listing = std::fs::read_to_string(tmp.path().join("drawn/pairs.jsonl")).unwrap();
    assert!(listing.lines().all(|l| l.contains(caption)), "{listing}");
    for (stage1, caption, says) in [
        ("run-stage1.mxq", " ", "the caption is empty"),
        ("run-stage1.mxq", "a red € 3", "never saw in training: '€'"),
        ("sep-stage1.mxq", caption, "not this bundle's stage 1"),
    ] {
        let out = draw(stage1, caption, "refused");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(says), "{caption} {stage1}: {stderr}");
    }
    let args = ["eval", "--bundle", &p("tiny.mxq"), "--stage1", &p("run-stage1.mxq"), "--drawn", "--count", "4"];
    let report: serde_json::Value = serde_json::from_str(&ok(&[&args[..], &["--json"]].concat())).unwrap();
    assert_eq!(report["drawn_for_test_captions"]["pairs"], 4, "{report}");
    assert_eq!(report["drawn_for_test_captions"]["validity_pct"], 100.0, "test captions, given: {report}");

    // captioning: the imported run's image-first prior on the same stage 1 captions images,
    // one JSON line each, the same caption every time (the best of 8 from a fixed seed, scored
    // by the caption-first bundle of the same stage 1)
    ok(&["export", "--run", &p("imported"), "--out", &p("captioner.mxq")]);
    let images = [tmp.path().join("drawn/00000.png"), tmp.path().join("gen/00001.png")];
    let images: Vec<String> = images.iter().map(|i| i.to_string_lossy().into_owned()).collect();
    let caption_with = |bundle: &str, scorer: &[&str], extra: &[&str]| {
        let args = ["caption", "--bundle", &p(bundle), "--stage1", &p("run-stage1.mxq")];
        let args = args.iter().chain(scorer).chain(extra).map(|s| s.to_string()).chain(images.iter().cloned());
        mxq(&args.collect::<Vec<_>>())
    };
    let scorer = p("tiny.mxq");
    let caption = |bundle: &str, extra: &[&str]| caption_with(bundle, &["--scorer", &scorer], extra);
    // the default scorer is the shipped demo bundle, on another stage 1: refused by name
    let refused = caption_with("captioner.mxq", &[], &[]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("not on this bundle's stage 1"), "{stderr}");
    assert!(stderr.contains("--candidates 1 chooses none"), "the way out is named: {stderr}");
    // at temperature 0 one candidate by default: the most likely codes, no scorer read
    let greedy = caption_with("captioner.mxq", &[], &["--temperature", "0"]);
    assert!(greedy.status.success(), "{greedy:?}");
    let same = caption_with("captioner.mxq", &[], &["--candidates", "1", "--temperature", "0"]);
    assert_eq!(same.stdout, greedy.stdout);
    let refused = caption("captioner.mxq", &["--candidates", "4", "--temperature", "0"]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("drawn greedily"), "{refused:?}");
    let refused = caption("captioner.mxq", &["--candidates", "0"]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("candidates 0 must be between 1 and 64"), "{refused:?}");
    let out = caption("captioner.mxq", &[]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    for (line, image) in lines.iter().zip(&images) {
        assert_eq!(line["image"], image.as_str(), "{stdout}");
        assert!(line["caption"].is_string(), "{stdout}");
    }
    assert_eq!(caption("captioner.mxq", &[]).stdout, stdout.as_bytes(), "the same captions again");
    assert!(caption("captioner.mxq", &["--temperature", "1", "--seed", "3"]).status.success());
    // a caption-first bundle cannot caption; an unreadable image is named before any work
    let refused = caption("tiny.mxq", &[]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("image-first prior"), "{refused:?}");
    std::fs::write(tmp.path().join("not.png"), b"no image").unwrap();
    let args = ["caption", "--bundle", &p("captioner.mxq"), "--stage1", &p("run-stage1.mxq"), &p("not.png")];
    let refused = mxq(&args.map(String::from));
    assert!(!refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("not.png"), "{refused:?}");
    // judged as `mxq caption` captions, scored by the --bundle of the same stage 1 (whose
    // pairs, images drawn best of 2 by the captioner, are judged too)
    let args = ["eval", "--captioner", &p("captioner.mxq"), "--stage1", &p("run-stage1.mxq"), "--count", "4", "--json"];
    let with = ["--bundle", &p("tiny.mxq"), "--candidates", "2"];
    let report: serde_json::Value = serde_json::from_str(&ok(&[&args[..], &with[..]].concat())).unwrap();
    assert_eq!(report["captioned_test_images"]["pairs"], 4, "{report}");
    assert_eq!(report["generated"]["pairs"], 4, "{report}");
    // a conditional captioner, fine-tuned from that one: it captions, and draws no whole pairs
    ok(&["import", "--stage1", &p("stage1.mxq"), "--run", &p("cond")]);
    let init = ["--init-from", &p("captioner.mxq"), "--conditional", "--batch-size", "16", "--max-steps", "2"];
    let (train, cond) = (p("train"), p("cond"));
    ok(&[&["train", "prior", "--data", &train, "--run", &cond][..], &init[..]].concat());
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("cond/prior/state.json")).unwrap()).unwrap();
    assert_eq!(state["config"]["prior"]["conditional"], true, "{state}");
    ok(&["export", "--run", &p("cond"), "--out", &p("cond.mxq")]);
    assert!(caption("cond.mxq", &[]).status.success());
    let whole = mxq(&["generate", "--bundle", &p("cond.mxq"), "--count", "1", "--out", &p("w")].map(String::from));
    assert!(!whole.status.success() && String::from_utf8_lossy(&whole.stderr).contains("conditional"), "{whole:?}");
    let judged = mxq(&["eval", "--bundle", &p("cond.mxq"), "--count", "2"].map(String::from));
    assert!(!judged.status.success() && String::from_utf8_lossy(&judged.stderr).contains("conditional"), "{judged:?}");
    // and back: a whole-pair prior fine-tuned from it (a bundle's flag is kept unless told)
    ok(&["import", "--stage1", &p("stage1.mxq"), "--run", &p("back")]);
    let back = p("back");
    let init = ["--init-from", &p("cond.mxq"), "--conditional", "false", "--batch-size", "16", "--max-steps", "1"];
    ok(&[&["train", "prior", "--data", &train, "--run", &back][..], &init[..]].concat());
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("back/prior/state.json")).unwrap()).unwrap();
    assert!(state["config"]["prior"].get("conditional").is_none(), "{state}");

    // stage 1's decoders fine-tuned on frozen codes: the codes stay, so a bundle's prior ships
    // with them (`export --prior`). Re-exported with the run's own decoders, the bundle samples
    // exactly its pairs; with the fine-tuned ones, the same codes decode to other images.
    let listing = |bundle: &str| std::fs::read_to_string(tmp.path().join(format!("{bundle}.gen/pairs.jsonl"))).unwrap();
    let images = |dir: &str| -> Vec<Vec<u8>> {
        (0..3).map(|i| std::fs::read(tmp.path().join(format!("{dir}/{i:05}.png"))).unwrap()).collect()
    };
    ok(&["export", "--run", &p("run"), "--prior", &p("tiny.mxq"), "--out", &p("again.mxq")]);
    ok(&["generate", "--bundle", &p("again.mxq"), "--count", "3", "--seed", "4", "--out", &p("again.mxq.gen")]);
    assert_eq!(listing("again.mxq"), listing("tiny.mxq"), "a bundle re-exported with its own decoders");
    assert_eq!(images("again.mxq.gen"), images("tiny.mxq.gen"));
    // `--prior` twice ships the weighted sum of the priors: `2,-1` of a bundle and itself is it
    let soup = ["export", "--run", &p("run"), "--prior", &p("tiny.mxq"), "--prior", &p("tiny.mxq")];
    ok(&[&soup[..], &["--prior-weights", "2,-1", "--out", &p("soup.mxq")]].concat());
    ok(&["generate", "--bundle", &p("soup.mxq"), "--count", "3", "--seed", "4", "--out", &p("soup.mxq.gen")]);
    assert_eq!(listing("soup.mxq"), listing("tiny.mxq"), "a bundle combined with itself");
    let x = p("x.mxq");
    let refused = [&soup[..], &["--prior-weights", "1", "--out", &x]].concat();
    let refused = mxq(&refused.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("1 weights for 2"), "{refused:?}");
    let (fine, steps) = (p("fine"), ["--batch-size", "16", "--max-steps", "2", "--lr", "0.01", "--warmup-steps", "0"]);
    let decoders = ["train", "decoders", "--data", &train, "--run", &fine];
    ok(&[&decoders[..], &steps].concat());
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("fine/decoders/state.json")).unwrap()).unwrap();
    assert_eq!((state["stage"].as_str(), state["step"].as_u64()), (Some("decoders"), Some(2)), "{state}");
    let again = mxq(&[&decoders[..], &steps].concat().iter().map(|s| s.to_string()).collect::<Vec<_>>());
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("--resume"), "{again:?}");
    ok(&["export", "--run", &fine, "--prior", &p("tiny.mxq"), "--out", &p("decoded.mxq")]);
    ok(&["generate", "--bundle", &p("decoded.mxq"), "--count", "3", "--seed", "4", "--out", &p("decoded.mxq.gen")]);
    assert_ne!(images("decoded.mxq.gen"), images("tiny.mxq.gen"), "the fine-tuned decoders are the bundle's");
    // or with a bundle's decoders, no run: the same pairs as the bundle whose prior it takes
    ok(&["export", "--decoders", &p("decoded.mxq"), "--prior", &p("tiny.mxq"), "--out", &p("swapped.mxq")]);
    ok(&["generate", "--bundle", &p("swapped.mxq"), "--count", "3", "--seed", "4", "--out", &p("swapped.mxq.gen")]);
    assert_eq!(images("swapped.mxq.gen"), images("decoded.mxq.gen"));
    let neither = mxq(&["export", "--prior", &p("tiny.mxq"), "--out", &p("x.mxq")].map(String::from));
    assert!(
        !neither.status.success() && String::from_utf8_lossy(&neither.stderr).contains("--decoders"),
        "{neither:?}"
    );
    // the run's stage 1 is the fine-tuned one from now on: its stage-1 file carries them
    ok(&["export", "--run", &fine, "--stage1", "--f32", "--out", &p("fine-stage1.mxq")]);
    ok(&["import", "--stage1", &p("fine-stage1.mxq"), "--run", &p("refined")]);
    ok(&["export", "--run", &p("refined"), "--prior", &p("tiny.mxq"), "--out", &p("refined.mxq")]);
    ok(&["generate", "--bundle", &p("refined.mxq"), "--count", "3", "--seed", "4", "--out", &p("refined.mxq.gen")]);
    assert_eq!(images("refined.mxq.gen"), images("decoded.mxq.gen"));
    // a low-rank text map: factored from the run's dense one and fine-tuned, recorded in the
    // decoders' config (a resume that asks for another rank is refused) and in the bundle's,
    // which is smaller and generates; the stage-1 file and the dense run's encoder file still
    // fit it (the codes are the same)
    let low = p("low");
    ok(&["import", "--stage1", &p("stage1.mxq"), "--run", &low]);
    let factored = ["train", "decoders", "--data", &train, "--run", &low, "--text-map-rank", "4"];
    ok(&[&factored[..], &steps].concat());
    let rank = |run: &str| {
        let state: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(tmp.path().join(run).join("decoders/state.json")).unwrap())
                .unwrap();
        (state["config"]["stage1"]["text"]["map_rank"].as_u64(), state["step"].as_u64())
    };
    assert_eq!(rank("low"), (Some(4), Some(2)));
    assert_eq!(rank("fine"), (None, Some(2)), "a dense map records no rank");
    let other = ["train", "decoders", "--data", &train, "--run", &low, "--resume", "--max-steps", "3"];
    let refused =
        mxq(&[&other[..], &["--text-map-rank", "5"]].concat().iter().map(|s| s.to_string()).collect::<Vec<_>>());
    assert!(!refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("rank 4"), "{refused:?}");
    ok(&other);
    assert_eq!(rank("low"), (Some(4), Some(3)), "resumed at its rank");
    ok(&["export", "--run", &low, "--prior", &p("tiny.mxq"), "--out", &p("low.mxq")]);
    let size = |f: &str| std::fs::metadata(tmp.path().join(f)).unwrap().len();
    assert!(size("low.mxq") + 100_000 < size("decoded.mxq"), "{} vs {}", size("low.mxq"), size("decoded.mxq"));
    ok(&["generate", "--bundle", &p("low.mxq"), "--count", "3", "--seed", "4", "--out", &p("low.mxq.gen")]);
    assert_eq!(listing("low.mxq").lines().count(), 3);
    ok(&["export", "--run", &low, "--stage1", "--f32", "--out", &p("low-stage1.mxq")]);
    ok(&["import", "--stage1", &p("low-stage1.mxq"), "--run", &p("low2")]);
    ok(&["export", "--run", &p("low2"), "--prior", &p("tiny.mxq"), "--out", &p("low2.mxq")]);
    ok(&["generate", "--bundle", &p("low2.mxq"), "--count", "3", "--seed", "4", "--out", &p("low2.mxq.gen")]);
    assert_eq!(images("low2.mxq.gen"), images("low.mxq.gen"), "the stage-1 file carries the factored map");
    ok(&[&["train", "decoders", "--data", &train, "--run", &p("low2")][..], &steps].concat());
    assert_eq!(rank("low2"), (Some(4), Some(2)), "a run of a factored stage 1 fine-tunes it at its rank");
    ok(&["import", "--stage1", &p("low-stage1.mxq"), "--run", &p("low3")]);
    let again = ["train", "decoders", "--data", &train, "--run", &p("low3"), "--text-map-rank", "5"];
    let refused = mxq(&[&again[..], &steps].concat().iter().map(|s| s.to_string()).collect::<Vec<_>>());
    assert!(!refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("rank 4"), "{refused:?}");
    assert!(!tmp.path().join("low3/decoders").exists(), "refused before its codes are encoded");
    ok(&["export", "--run", &low, "--prior", &p("captioner.mxq"), "--out", &p("lowcap.mxq")]);
    assert!(caption("lowcap.mxq", &[]).status.success(), "the dense run's encoder file fits");
    // decoders trained on one half's codes alone: recorded, kept to on a resume, and their
    // codes are another file than the whole pairs'
    let read = p("read");
    ok(&["import", "--stage1", &p("stage1.mxq"), "--run", &read]);
    let given = ["train", "decoders", "--data", &train, "--run", &read, "--given", "image"];
    ok(&[&given[..], &steps].concat());
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("read/decoders/state.json")).unwrap()).unwrap();
    assert_eq!(state["options"]["given"].as_str(), Some("image"), "{state}");
    let codes_file = |run: &str| -> Vec<String> {
        let names = std::fs::read_dir(tmp.path().join(run).join("decoders")).unwrap();
        names
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("codes-"))
            .collect()
    };
    assert_eq!((codes_file("read").len(), codes_file("fine").len()), (1, 1));
    assert_ne!(codes_file("read"), codes_file("fine"), "the image alone's codes are not the whole pairs'");
    let flip =
        ["train", "decoders", "--data", &train, "--run", &read, "--resume", "--given", "caption", "--max-steps", "3"];
    let flip = mxq(&flip.map(String::from));
    assert!(!flip.status.success() && String::from_utf8_lossy(&flip.stderr).contains("given"), "{flip:?}");
    assert_eq!(codes_file("read").len(), 1, "a refused resume encodes no codes for the other half");
    let bad = mxq(&["train", "decoders", "--data", &train, "--run", &p("bad"), "--given", "both"].map(String::from));
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("image, caption"), "{bad:?}");
    // a prior of another stage 1 is refused by name
    let other = mxq(&["export", "--run", &p("sep"), "--prior", &p("tiny.mxq"), "--out", &p("x.mxq")].map(String::from));
    assert!(!other.status.success() && String::from_utf8_lossy(&other.stderr).contains("another stage 1"), "{other:?}");

    // the stage-1 ceiling alone, as a table
    let table = ok(&["eval", "--run", &p("run"), "--count", "8"]);
    assert!(
        table.contains("stage 1: reconstructed caption, true image") && table.contains("text codes carry"),
        "{table}"
    );
}

#[test]
fn bad_inputs_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |s: &str| tmp.path().join(s).to_string_lossy().into_owned();
    std::fs::write(tmp.path().join("broken.mxq"), b"not a bundle").unwrap();
    let out = mxq(&["generate", "--bundle", &p("broken.mxq"), "--count", "1", "--out", &p("g")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("broken.mxq") && err.contains("truncated or corrupted"), "{err}");

    std::fs::create_dir(tmp.path().join("d")).unwrap();
    std::fs::write(tmp.path().join("d/pairs.jsonl"), "{\"image\": \"a.png\", \"caption\": \"x\"}\n").unwrap();
    let out = mxq(&["train", "stage1", "--preset", "tiny", "--data", &p("d"), "--run", &p("r")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("pairs.jsonl:1") && err.contains("a.png"), "{err}");
    std::fs::write(tmp.path().join("d/pairs.jsonl"), "{\"img\": 3}\n").unwrap();
    let out = mxq(&["train", "stage1", "--preset", "tiny", "--data", &p("d"), "--run", &p("r")]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("pairs.jsonl:1"));
    let out = mxq(&["train", "prior", "--data", &p("d"), "--run", &p("nothing")]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("nothing"));
    let out = mxq(&["eval"]);
    assert!(
        !out.status.success()
            && String::from_utf8_lossy(&out.stderr)
                .contains("--pairs DIR, --bundle FILE, --captioner FILE or --run DIR")
    );
    let out = mxq(&["eval", "--pairs", &p("d"), "--train", &p("no-such-train")]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no-such-train"), "{out:?}");

    // generate's options are checked before the bundle is read or a pair sampled; --out
    // before sampling (with the shipped bundle)
    let fails_with = |args: &[&str], want: &str| {
        let out = mxq(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(want), "mxq {args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    };
    let generate = |extra: &[&'static str]| -> Vec<String> {
        ["generate", "--out", &p("gen")]
            .iter()
            .map(|s| s.to_string())
            .chain(extra.iter().map(|s| s.to_string()))
            .collect()
    };
    for (extra, want) in [
        (&["--count", "0"][..], "count 0 must be between 1"),
        (&["--count", "18446744073709551615"], "must be between 1 and 1000000"),
        (&["--batch", "0"], "batch 0 must be between 1"),
        (&["--temperature=-1"], "temperature -1 must be a finite number"),
        (&["--temperature", "NaN"], "temperature NaN"),
        (&["--temperature=-inf"], "temperature -inf"),
        (&["--top-p", "2"], "top-p 2 must be in (0, 1]"),
        (&["--top-p", "NaN"], "top-p NaN"),
        (&["--count", "5000", "--grid", "g.png"], "--grid holds at most 4096"),
        (&["--bundle", "/dev/zero"], "not a regular file"),
        (&["--bundle", "/tmp"], "not a regular file"),
    ] {
        let args = generate(extra);
        fails_with(&args.iter().map(String::as_str).collect::<Vec<_>>(), want);
    }
    assert!(!tmp.path().join("gen").exists(), "no refused run left a folder");
    fails_with(&["generate", "--count", "1", "--out", &p("d")], "holds 1 files already");
    fails_with(
        &["data", "caption-mnist", "--split", "test", "--count", "2", "--out", &p("d")],
        "holds 1 files already",
    );
    fails_with(&["eval", "--bundle", &p("broken.mxq"), "--temperature", "NaN"], "temperature NaN");
    fails_with(&["data", "caption-mnist", "--split", "test", "--count", "0", "--out", &p("none")], "count 0");
    assert!(!tmp.path().join("none").exists(), "a refused count left a folder");
    // training options that would train nothing or NaN weights: refused before the pairs are
    // read or the run is written
    let train = ["train", "stage1", "--preset", "tiny", "--data", &p("d"), "--run", &p("bad-run")];
    for (extra, want) in [
        (&["--lr", "NaN"][..], "learning rate NaN"),
        (&["--lr=-0.001"], "learning rate -0.001"),
        (&["--codebook-decay", "1"], "codebook decay 1"),
        (&["--epochs", "0"], "0 epochs"),
        (&["--max-steps", "0"], "at most 0 steps"),
    ] {
        fails_with(&train.iter().chain(extra).copied().collect::<Vec<_>>(), want);
    }
    assert!(!tmp.path().join("bad-run").exists(), "a refused run left a folder");
    // an I/O error names its path and says its cause once
    let out = mxq(&["eval", "--pairs", &p("no-such-folder")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");

    // images that do not fit (1×1 gray, 100×80 with alpha) and an overlong caption train,
    // and are counted in a warning
    let odd = tmp.path().join("odd");
    std::fs::create_dir(&odd).unwrap();
    image::GrayImage::new(1, 1).save(odd.join("gray.png")).unwrap();
    image::RgbaImage::new(100, 80).save(odd.join("clear.png")).unwrap();
    image::RgbImage::new(64, 64).save(odd.join("plain.png")).unwrap();
    let long = "a white 7 in the center. ".repeat(40);
    let listing =
        [("gray.png", "a red 1 in the center."), ("clear.png", "a blue 2 in the center."), ("plain.png", &long)]
            .map(|(image, caption)| serde_json::json!({"image": image, "caption": caption}).to_string() + "\n")
            .concat();
    std::fs::write(odd.join("pairs.jsonl"), listing).unwrap();
    let args = ["train", "stage1", "--preset", "tiny", "--data", &p("odd"), "--run", &p("odd-run")];
    let out = mxq(&args.iter().chain(&["--batch-size", "2", "--max-steps", "1"]).copied().collect::<Vec<_>>());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(
            "warning: of 3 training pairs, 2 images resized to 64×64; 2 images converted to 8-bit RGB (alpha and extra depth dropped); 1 captions cut to 64 tokens"
        ),
        "{err}"
    );
}

#[test]
fn bench_prints_one_json_figure_per_measure() {
    let out = ok(&["bench", "--presets", "tiny", "--steps", "1", "--runs", "1"]);
    let figures: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    let names: Vec<&str> = figures.iter().map(|f| f["figure"].as_str().unwrap()).collect();
    assert_eq!(names, ["stage1_train", "prior_train", "sample1_f32", "sample16_f32", "sample1_int8", "sample16_int8"]);
    for f in &figures {
        assert!(f["value"].as_f64().unwrap() > 0.0 && f["peak_rss_mb"].as_f64().unwrap() > 1.0, "{f}");
    }
    let bad = mxq(&["bench", "--presets", "huge"]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("huge"));
    let bad = mxq(&["bench", "--presets", "tiny", "--backend", "nope", "--runs", "1", "--steps", "1"]);
    assert!(
        !bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("backend nope is not in this build")
    );
}
