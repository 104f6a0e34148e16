//! Hostile input (issue 18): re-signed bundles with bad configs, tokenizers or weights, bad
//! files and folders, out-of-range sampling options. Each gives a named error, never a
//! panic, an abort, a hang or silently wrong output; a bounded fuzz run checks the same
//! over random bundle configs, header bytes and `pairs.jsonl` lines.

mod common;

use std::path::Path;

use mxq::MxqConfig;
use mxq::bundle::{self, Generator, LoadOptions, Precision, format};
use mxq::data::PairWriter;
use mxq::sample::{MAX_COUNT, SampleOptions, check_counts};
use mxq::train::TrainOptions;
use proptest::prelude::*;
use serde_json::{Value, json};

/// A tiny model's parts: the weights, config JSON and tokenizer JSON a bundle is made of.
struct Parts {
    tensors: std::collections::BTreeMap<String, mxq::weights::OwnedTensor>,
    config: Value,
    tokenizer: Value,
}

fn parts() -> Parts {
    let tok = common::tokenizer(&common::pairs(200));
    let mut cfg = MxqConfig::tiny();
    cfg.stage1.text.vocab_size = tok.vocab_size();
    let generator = Generator::new(&cfg, &mxq::cpu());
    Parts {
        tensors: mxq::weights::module_tensors(&generator).unwrap(),
        config: serde_json::from_str(&cfg.to_json()).unwrap(),
        tokenizer: serde_json::from_str(&tok.to_json()).unwrap(),
    }
}

impl Parts {
    /// The parts as a bundle with a valid signature: what an attacker who re-signs gets.
    fn signed(&self) -> Vec<u8> {
        format::write(self.tensors.clone(), self.config.to_string(), self.tokenizer.to_string(), Precision::F32)
            .unwrap()
    }
}

fn load_error(bytes: &[u8]) -> String {
    match bundle::load(bytes, &mxq::cpu(), LoadOptions::default()) {
        Ok(_) => panic!("loaded a bundle that should be refused"),
        Err(e) => e.to_string(),
    }
}

fn assert_contains(error: &str, want: &str) {
    assert!(error.contains(want), "error {error:?} should name {want:?}");
}

#[test]
fn a_tokenizer_whose_length_is_zero_or_not_the_configs_is_refused() {
    let good = parts();
    for (length, want) in [(0u64, "padding length 0"), (1, "padding captions to 1 tokens"), (1 << 40, "padding length")]
    {
        let mut p = parts();
        p.tokenizer["padding"]["strategy"] = json!({ "Fixed": length });
        p.tokenizer["truncation"]["max_length"] = json!(length);
        assert_contains(&load_error(&p.signed()), want);
    }
    // a tokenizer that pads but does not truncate would let a long caption through whole
    let mut p = parts();
    p.tokenizer["truncation"] = Value::Null;
    assert_contains(&load_error(&p.signed()), "truncated");
    // the untouched parts load (the refusals above are the edits', not the helper's)
    bundle::load(&good.signed(), &mxq::cpu(), LoadOptions::default()).unwrap();
}

/// A re-signed tokenizer.json that would give ids past the model's embedding rows, or other
/// than `length` ids per caption, or fail to encode: each refused by what it changes.
#[test]
fn a_tokenizer_that_would_encode_wrong_is_refused() {
    type Edit = fn(&mut Value);
    let edits: [(&str, Edit, &str); 7] = [
        ("an id past the vocabulary", |t| t["model"]["vocab"]["a"] = json!(5000), "past the vocabulary"),
        ("another padding id", |t| t["padding"]["pad_id"] = json!(5), "padded at the end"),
        ("padding to a multiple", |t| t["padding"]["pad_to_multiple_of"] = json!(100), "padded at the end"),
        ("padding at the start", |t| t["padding"]["direction"] = json!("Left"), "padded at the end"),
        ("a stride", |t| t["truncation"]["stride"] = json!(70), "no stride"),
        ("no unknown token", |t| t["model"]["unk_token"] = Value::Null, "byte-level BPE"),
        (
            "a post-processor",
            |t| {
                t["post_processor"] =
                    json!({ "type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true })
            },
            "post-processor",
        ),
    ];
    for (what, edit, want) in edits {
        let mut p = parts();
        edit(&mut p.tokenizer);
        let e = load_error(&p.signed());
        assert!(e.contains(want), "{what}: {e:?} should name {want:?}");
    }
}

#[test]
fn a_config_past_its_bounds_is_refused_before_anything_is_built() {
    for (path, value, want) in [
        (&["stage1", "codebook", "size"][..], json!(1u64 << 40), "stage1.codebook.size"),
        (&["stage1", "codebook", "size"][..], json!(1u64 << 24), "stage1.codebook.size"),
        (&["prior", "layers"][..], json!(1_000_000_000u64), "prior.layers"),
        (&["stage1", "image", "res_blocks"][..], json!(1_000_000_000u64), "stage1.image.res_blocks"),
        (&["prior", "dropout"][..], json!(f64::MAX), "prior.dropout"),
    ] {
        let mut p = parts();
        let (last, parents) = path.split_last().unwrap();
        let mut at = &mut p.config;
        for key in parents {
            at = &mut at[*key];
        }
        at[*last] = value;
        assert_contains(&load_error(&p.signed()), want);
    }
}

#[test]
fn a_config_larger_than_its_weights_is_refused_before_they_are_loaded() {
    let mut p = parts();
    p.config["prior"]["layers"] = json!(40);
    p.config["prior"]["d_model"] = json!(2048);
    p.config["prior"]["heads"] = json!(8);
    let e = load_error(&p.signed());
    assert_contains(&e, "parameters but the file holds");
    // a mismatch of the same size is burn's, without its hint for developers
    let mut p = parts();
    p.config["stage1"]["image"]["res_hidden"] = json!(p.config["stage1"]["image"]["res_hidden"].as_u64().unwrap() / 2);
    let e = load_error(&p.signed());
    assert_contains(&e, "do not fit");
    assert!(!e.contains("allow_partial"), "{e}");
}

/// An encoder file (the page fetches one from its address's `stage1=`): re-signed with a
/// config past its bounds or larger than its weights, or a tokenizer of length 0, it is
/// refused by name, as a bundle is.
#[test]
fn hostile_encoder_files_are_refused_by_name() {
    let tok = common::tokenizer(&common::pairs(200));
    let mut cfg = MxqConfig::tiny();
    cfg.stage1.text.vocab_size = tok.vocab_size();
    let coder = mxq::model::mxq_vae::MxqCoder::new(&cfg.stage1, &mxq::cpu());
    let tensors = mxq::weights::module_tensors(&coder).unwrap();
    let (config, tokenizer): (Value, Value) =
        (serde_json::from_str(&cfg.to_json()).unwrap(), serde_json::from_str(&tok.to_json()).unwrap());
    let signed = |config: &Value, tokenizer: &Value| {
        let (c, t) = (config.to_string(), tokenizer.to_string());
        format::write_kind(tensors.clone(), c, t, Precision::F32, format::Kind::Encoder).unwrap()
    };
    let error = |bytes: &[u8]| match bundle::load_encoder(bytes, &mxq::cpu()) {
        Ok(_) => panic!("loaded an encoder file that should be refused"),
        Err(e) => e.to_string(),
    };
    bundle::load_encoder(&signed(&config, &tokenizer), &mxq::cpu()).unwrap();
    let mut c = config.clone();
    c["stage1"]["codebook"]["size"] = json!(1u64 << 40);
    assert_contains(&error(&signed(&c, &tokenizer)), "stage1.codebook.size");
    let mut c = config.clone();
    c["stage1"]["image"]["res_hidden"] = json!(c["stage1"]["image"]["res_hidden"].as_u64().unwrap() * 8);
    assert_contains(&error(&signed(&c, &tokenizer)), "parameters but the file holds");
    let mut t = tokenizer.clone();
    t["padding"]["strategy"] = json!({ "Fixed": 0 });
    t["truncation"]["max_length"] = json!(0);
    assert_contains(&error(&signed(&config, &t)), "padding length 0");
}

/// A 4-bit weight (`U8`, two values per byte) without its scales, or with too few, is
/// refused by name; with them it loads, at its full shape.
#[test]
fn four_bit_weights_need_their_scales() {
    let p = parts();
    let (name, t) = p.tensors.iter().find(|(n, t)| n.ends_with("weight") && t.shape.len() == 2).unwrap();
    let values = t.data.len() / 4;
    let four_bit = |scales: Option<usize>| {
        let mut p = parts();
        let mut shape = t.shape.clone();
        *shape.last_mut().unwrap() /= 2;
        let bytes = vec![0x71u8; values / 2]; // 1 and 7 steps
        p.tensors.insert(name.clone(), mxq::weights::OwnedTensor { dtype: safetensors::Dtype::U8, shape, data: bytes });
        if let Some(n) = scales {
            let data = [0.5f32.to_le_bytes()].repeat(n).concat();
            let scale = mxq::weights::OwnedTensor { dtype: safetensors::Dtype::F32, shape: vec![n], data };
            p.tensors.insert(format!("{name}.__scale"), scale);
        }
        p.signed()
    };
    assert_contains(&load_error(&four_bit(None)), &format!("4-bit tensor {name} has no scales"));
    let e = load_error(&four_bit(Some(values.div_ceil(64) - 1)));
    assert_contains(&e, name);
    assert_contains(&e, "scales for");
    let contents = format::read(&four_bit(Some(values.div_ceil(64)))).unwrap();
    let w = &contents.weights[name];
    assert_eq!(w.shape().as_slice(), t.shape.as_slice());
    assert_eq!(&w.try_to_vec::<f32>().unwrap()[..2], [0.5, 3.5]);
}

/// A tensor the model does not have is refused by name, not skipped: a file for another
/// model version would otherwise load half its weights.
#[test]
fn a_weight_the_model_lacks_is_refused_by_name() {
    let mut p = parts();
    let extra = mxq::weights::OwnedTensor { dtype: safetensors::Dtype::F32, shape: vec![2], data: vec![0; 8] };
    p.tensors.insert("prior.extra.weight".into(), extra);
    let e = load_error(&p.signed());
    assert_contains(&e, "unused");
    assert_contains(&e, "prior.extra.weight");
}

#[test]
fn scales_of_another_dtype_are_refused() {
    let mut p = parts();
    let (name, t) = p.tensors.iter().find(|(n, t)| n.ends_with("weight") && t.shape.len() == 2).unwrap();
    let (name, values) = (name.clone(), t.data.len() / 4);
    let q = mxq::weights::OwnedTensor { dtype: safetensors::Dtype::I8, shape: t.shape.clone(), data: vec![1; values] };
    p.tensors.insert(name.clone(), q);
    let n = values.div_ceil(64);
    let scale = mxq::weights::OwnedTensor { dtype: safetensors::Dtype::I32, shape: vec![n], data: vec![0; 4 * n] };
    p.tensors.insert(format!("{name}.__scale"), scale);
    let e = load_error(&p.signed());
    assert_contains(&e, &name);
    assert_contains(&e, "not F32");
}

/// The judge's file (`--judge`) is refused with a NaN in it, as a bundle is.
#[test]
fn weights_files_that_are_not_finite_are_refused() {
    let mut p = parts();
    let (name, t) = p.tensors.iter_mut().find(|(n, _)| n.contains("bias")).unwrap();
    t.data[..4].copy_from_slice(&f32::NAN.to_le_bytes());
    let name = name.clone();
    let bytes = mxq::weights::serialize(&p.tensors, None).unwrap();
    let mut generator = Generator::new(&MxqConfig::from_json(&p.config.to_string()).unwrap(), &mxq::cpu());
    let e = mxq::weights::load_weights(&mut generator, bytes).unwrap_err().to_string();
    assert_contains(&e, &name);
    assert_contains(&e, "non-finite");
}

#[test]
fn weights_that_are_not_finite_are_refused_by_tensor() {
    for bad in [f32::NAN, f32::INFINITY] {
        let mut p = parts();
        let (name, t) = p.tensors.iter_mut().find(|(n, _)| n.contains("bias")).unwrap();
        t.data[..4].copy_from_slice(&bad.to_le_bytes());
        let name = name.clone();
        let e = load_error(&p.signed());
        assert_contains(&e, &name);
        assert_contains(&e, "non-finite");
    }
}

#[test]
fn only_regular_files_within_their_bound_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let read = |path: &Path, limit| mxq::error::read_bounded(path, limit).unwrap_err().to_string();
    assert_contains(&read(&fifo, 1 << 20), "not a regular file");
    assert_contains(&read(Path::new("/dev/zero"), 1 << 20), "not a regular file");
    assert_contains(&read(dir.path(), 1 << 20), "not a regular file");
    let big = dir.path().join("big");
    std::fs::write(&big, vec![0u8; 2000]).unwrap();
    assert_contains(&read(&big, 1000), "2000 bytes, more than the 1000 allowed");
    assert_eq!(mxq::error::read_bounded(&big, 2000).unwrap().len(), 2000);
}

#[test]
fn sampling_options_out_of_range_are_refused_by_name() {
    let base = SampleOptions::default();
    for temperature in [-1.0, f32::NEG_INFINITY, f32::INFINITY, f32::NAN] {
        let e = SampleOptions { temperature, ..base }.check().unwrap_err().to_string();
        assert_contains(&e, "temperature");
    }
    for top_p in [-1.0, 0.0, 2.0, f32::NAN] {
        let e = SampleOptions { top_p, ..base }.check().unwrap_err().to_string();
        assert_contains(&e, "top-p");
    }
    for ok in [SampleOptions { temperature: 0.0, top_p: 1.0, ..base }, SampleOptions { top_p: 0.01, ..base }] {
        ok.check().unwrap();
    }
    assert_contains(&check_counts(0, 4).unwrap_err().to_string(), "count 0");
    assert_contains(&check_counts(MAX_COUNT + 1, 4).unwrap_err().to_string(), "count");
    assert_contains(&check_counts(4, 0).unwrap_err().to_string(), "batch 0");
    check_counts(1, 1).unwrap();
}

/// An image that declares more pixels than are read: refused before it is decoded (a
/// PNG of a few kilobytes can declare gigapixels).
#[test]
fn an_image_too_large_to_read_is_refused_by_its_size() {
    let side = mxq::data::pairs::MAX_IMAGE_SIDE + 1;
    let mut png = std::io::Cursor::new(Vec::new());
    image::GrayImage::new(side, 1).write_to(&mut png, image::ImageFormat::Png).unwrap();
    let e = mxq::data::pairs::decode_image(png.get_ref(), "wide.png").unwrap_err().to_string();
    assert_contains(&e, "wide.png");
    assert_contains(&e, &format!("up to {0}×{0} pixels", side - 1));
    // as wide as is read: read, resized to 64×64
    let mut png = std::io::Cursor::new(Vec::new());
    image::GrayImage::new(side - 1, 1).write_to(&mut png, image::ImageFormat::Png).unwrap();
    assert_eq!(mxq::data::pairs::decode_image(png.get_ref(), "ok.png").unwrap().len(), 64 * 64 * 3);
}

/// Natively a JPEG is read as a PNG is (own data sets, `mxq caption photo.jpg`).
#[test]
fn a_jpeg_is_read_natively() {
    let mut jpeg = std::io::Cursor::new(Vec::new());
    let gradient = image::RgbImage::from_fn(96, 80, |x, y| image::Rgb([x as u8 * 2, y as u8 * 3, 0]));
    gradient.write_to(&mut jpeg, image::ImageFormat::Jpeg).unwrap();
    let rgb = mxq::data::pairs::decode_image(jpeg.get_ref(), "photo.jpg").unwrap();
    assert_eq!(rgb.len(), 64 * 64 * 3);
    assert!(
        rgb[(63 * 64 + 63) * 3] > 150 && rgb[0] < 20,
        "the gradient survives: {} {}",
        rgb[(63 * 64 + 63) * 3],
        rgb[0]
    );
}

/// Training options that would train nothing, or train every weight to NaN, are refused by
/// name before a run starts.
#[test]
fn training_options_out_of_range_are_refused_by_name() {
    let base = TrainOptions::default();
    let refused = [
        (TrainOptions { learning_rate: f64::NAN, ..base.clone() }, "learning rate NaN"),
        (TrainOptions { learning_rate: -1e-3, ..base.clone() }, "learning rate -0.001"),
        (TrainOptions { learning_rate: f64::INFINITY, ..base.clone() }, "learning rate inf"),
        (TrainOptions { codebook_decay: 1.0, ..base.clone() }, "codebook decay 1"),
        (TrainOptions { codebook_decay: f64::NAN, ..base.clone() }, "codebook decay NaN"),
        (TrainOptions { code_noise: 1.0, ..base.clone() }, "code noise 1"),
        (TrainOptions { weight_decay: -1.0, ..base.clone() }, "weight decay -1"),
        (TrainOptions { epochs: 0, ..base.clone() }, "0 epochs"),
        (TrainOptions { max_steps: Some(0), ..base.clone() }, "at most 0 steps"),
        (TrainOptions { batch_size: 0, ..base.clone() }, "batches of 0 pairs"),
    ];
    for (options, want) in refused {
        assert_contains(&options.check().unwrap_err().to_string(), want);
    }
    base.check().unwrap();
    TrainOptions { codebook_decay: 0.0, max_steps: Some(1), epochs: 1, ..base }.check().unwrap();
}

#[test]
fn idx_files_of_other_glyphs_or_impossible_sizes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let idx = |magic: u32, dims: &[u32], payload: usize| {
        let mut b = magic.to_be_bytes().to_vec();
        dims.iter().for_each(|d| b.extend(d.to_be_bytes()));
        b.extend(vec![0u8; payload]);
        b
    };
    let (images, labels) = (dir.path().join("x-images-idx3-ubyte"), dir.path().join("x-labels-idx1-ubyte"));
    std::fs::write(&images, idx(0x0803, &[2, 30, 30], 2 * 900)).unwrap();
    std::fs::write(&labels, idx(0x0801, &[2], 2)).unwrap();
    let e = mxq::data::idx::Digits::load(&images, &labels).unwrap_err().to_string();
    assert_contains(&e, "glyphs of 30×30, expected MNIST's 28×28");
    // dimensions whose product overflows are a mismatch, not a panic
    let e = mxq::data::idx::parse_idx(&idx(0x0803, &[u32::MAX, u32::MAX, u32::MAX], 8), 0x0803).unwrap_err();
    assert_contains(&e, "need more bytes of data, the file has 8");
    std::fs::write(&images, idx(0x0803, &[2, 28, 28], 2 * 784)).unwrap();
    assert_eq!(mxq::data::idx::Digits::load(&images, &labels).unwrap().len(), 2);
}

fn write_image(path: &Path) {
    std::fs::write(path, mxq::data::pairs::png_bytes(&vec![0u8; 64 * 64 * 3])).unwrap();
}

#[test]
fn image_paths_must_stay_inside_the_pairs_folder() {
    let outside = tempfile::tempdir().unwrap();
    write_image(&outside.path().join("secret.png"));
    let dir = tempfile::tempdir().unwrap();
    write_image(&dir.path().join("ok.png"));
    std::os::unix::fs::symlink(outside.path().join("secret.png"), dir.path().join("link.png")).unwrap();
    let secret = outside.path().join("secret.png").display().to_string();
    for (image, want) in [
        ("../secret.png".to_string(), "no '..'"),
        (secret, "no absolute path"),
        ("link.png".to_string(), "leads out of the folder"),
        ("/dev/zero".to_string(), "no absolute path"),
    ] {
        let line = json!({ "image": image, "caption": "one" }).to_string();
        std::fs::write(
            dir.path().join("pairs.jsonl"),
            format!("{{\"image\": \"ok.png\", \"caption\": \"x\"}}\n{line}\n"),
        )
        .unwrap();
        let e = mxq::data::read_pairs(dir.path()).unwrap_err().to_string();
        assert_contains(&e, "pairs.jsonl:2");
        assert_contains(&e, want);
    }
}

#[test]
fn a_byte_order_mark_is_read_and_a_non_utf8_line_is_named() {
    let dir = tempfile::tempdir().unwrap();
    write_image(&dir.path().join("a.png"));
    let line = b"{\"image\": \"a.png\", \"caption\": \"x\"}\n";
    std::fs::write(dir.path().join("pairs.jsonl"), [&b"\xef\xbb\xbf"[..], line].concat()).unwrap();
    assert_eq!(mxq::data::read_pairs(dir.path()).unwrap().len(), 1);
    std::fs::write(
        dir.path().join("pairs.jsonl"),
        [&line[..], b"{\"image\": \"a.png\", \"caption\": \"\xff\"}\n"].concat(),
    )
    .unwrap();
    let e = mxq::data::read_pairs(dir.path()).unwrap_err().to_string();
    assert_contains(&e, "pairs.jsonl:2");
    assert_contains(&e, "not UTF-8");
}

#[test]
fn a_pairs_folder_is_never_overwritten_in_part() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let image = vec![0u8; 64 * 64 * 3];
    let mut w = PairWriter::create(&out, false).unwrap();
    for caption in ["a", "b", "c"] {
        w.push(&image, caption).unwrap();
    }
    assert_eq!(w.finish().unwrap(), 3);
    // a second run into it: refused, the first run's pairs intact
    let e = PairWriter::create(&out, false).err().unwrap().to_string();
    assert_contains(&e, "holds 7 files already");
    assert_eq!(mxq::data::read_pairs(&out).unwrap().len(), 3);
    // replaced: no orphan of the longer first run is left
    let mut w = PairWriter::create(&out, true).unwrap();
    w.push(&image, "z").unwrap();
    w.finish().unwrap();
    let mut names: Vec<String> =
        std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["00000.png", "00000.txt", "pairs.jsonl"]);
    // a folder holding anything else is not replaced, and keeps that file
    std::fs::write(out.join("notes.md"), "mine").unwrap();
    let e = PairWriter::create(&out, true).err().unwrap().to_string();
    assert_contains(&e, "notes.md");
    assert!(out.join("notes.md").exists() && out.join("pairs.jsonl").exists());
}

#[test]
fn pairs_with_nothing_drawn_are_judged_without_a_frechet_distance() {
    let device = mxq::cpu();
    let judge_bytes = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/judge.safetensors")).unwrap();
    let judge = mxq::eval::judge::Judge::from_bytes(judge_bytes, &device).unwrap();
    let test = mxq::eval::protocol::TestSplit::load(&common::mnist_dir()).unwrap();
    let blank = mxq::data::Pair { image: vec![0u8; 64 * 64 * 3], caption: "a red 3 on the left".into() };
    let scores = mxq::eval::protocol::judge_pairs(&judge, &vec![blank; 4], &test, None).unwrap();
    assert_eq!(scores.frechet_distance, None);
    assert_eq!(scores.pairs, 4);
    assert_eq!(scores.consistency_pct, 0.0);
}

/// Config fields an attacker edits, with the values tried on each: zero, one, small, the
/// bounds' neighbourhood, huge, negative, fractional and non-numbers.
const FIELDS: [&[&str]; 12] = [
    &["stage1", "codebook", "size"],
    &["stage1", "codebook", "dim"],
    &["stage1", "text", "positions"],
    &["stage1", "text", "token_length"],
    &["stage1", "text", "kernel"],
    &["stage1", "text", "layers"],
    &["stage1", "image", "hidden"],
    &["stage1", "image", "res_blocks"],
    &["stage1", "masking", "patch"],
    &["prior", "layers"],
    &["prior", "heads"],
    &["prior", "d_model"],
];

fn field_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        (0u64..70).prop_map(|v| json!(v)),
        prop::sample::select(vec![255u64, 256, 511, 512, 513, 1023, 1024, 1025, 4096, 65536, 65537, 1 << 40, u64::MAX])
            .prop_map(|v| json!(v)),
        Just(json!(-1)),
        Just(json!(2.5)),
        Just(json!(f64::MAX)),
        Just(json!("8")),
        Just(Value::Null),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    /// A re-signed tiny bundle with one or two config fields edited: it loads (and then
    /// generates a pair) or gives a named error; never a panic or an abort.
    #[test]
    fn edited_bundle_configs_load_or_give_named_errors(
        edits in prop::collection::vec((0..FIELDS.len(), field_value()), 1..3),
    ) {
        let mut p = PARTS.with(|p| Parts { tensors: p.tensors.clone(), config: p.config.clone(), tokenizer: p.tokenizer.clone() });
        for (field, value) in edits {
            let (last, parents) = FIELDS[field].split_last().unwrap();
            let mut at = &mut p.config;
            for key in parents {
                at = &mut at[*key];
            }
            at[*last] = value;
        }
        match bundle::load(&p.signed(), &mxq::cpu(), LoadOptions::default()) {
            Ok(b) => prop_assert_eq!(b.generate(1, 1, SampleOptions::default(), &mxq::cpu()).len(), 1),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    /// Random bytes in place of a bundle's safetensors header (its length prefix kept
    /// plausible, so the parser reads them): a named error, never a panic.
    #[test]
    fn random_headers_give_named_errors(header in prop::collection::vec(any::<u8>(), 0..300), tail in 0usize..64) {
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend(&header);
        bytes.extend(std::iter::repeat_n(0u8, tail));
        prop_assert!(bundle::load(&bytes, &mxq::cpu(), LoadOptions::default()).is_err());
        prop_assert!(bundle::load_encoder(&bytes, &mxq::cpu()).is_err());
    }

    /// Random JSON-ish text as config JSON: parsed and checked, or a named error.
    #[test]
    fn random_config_json_parses_or_gives_a_named_error(text in "[{}\\[\\]\":,a-z0-9_. -]{0,200}") {
        let _ = MxqConfig::from_json(&text);
    }

    /// Random `pairs.jsonl` lines (valid records, broken JSON, odd paths, control bytes):
    /// read, or refused naming the file and line.
    #[test]
    fn random_pairs_lines_are_read_or_named(lines in prop::collection::vec(pairs_line(), 1..4)) {
        PAIRS_DIR.with(|dir| {
            let listing = lines.join("\n");
            std::fs::write(dir.path().join("pairs.jsonl"), &listing).unwrap();
            match mxq::data::read_pairs(dir.path()) {
                Ok(pairs) => prop_assert!(!pairs.is_empty()),
                Err(e) => prop_assert!(e.to_string().contains("pairs.jsonl"), "{}", e),
            }
            Ok(())
        })?;
    }
}

fn pairs_line() -> impl Strategy<Value = String> {
    let path = prop::sample::select(vec![
        "a.png",
        "../a.png",
        "/etc/passwd",
        "missing.png",
        "",
        ".",
        "a.png/..",
        "sub/../a.png",
    ]);
    prop_oneof![
        (path, "[ -~]{0,20}").prop_map(|(p, c)| json!({ "image": p, "caption": c }).to_string()),
        "[ -~]{0,60}",
        Just("{\"image\": 3, \"caption\": []}".to_string()),
    ]
}

thread_local! {
    static PARTS: Parts = parts();
    static PAIRS_DIR: tempfile::TempDir = {
        let dir = tempfile::tempdir().unwrap();
        write_image(&dir.path().join("a.png"));
        dir
    };
}
