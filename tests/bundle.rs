//! The bundle: f32 and int8 round trips, and named errors for every kind of bad file.

mod common;

use burn::prelude::*;
use mxq::MxqConfig;
use mxq::bundle::{self, Generator, LoadOptions, Precision};
use mxq::kernels::int8::{BLOCK, dequantize_blocks, quantize_blocks};
use mxq::train;
use safetensors::SafeTensors;

fn setup() -> (Generator, MxqConfig, mxq::data::tokenizer::CaptionTokenizer, Device) {
    let device = mxq::cpu();
    device.seed(3);
    let tok = common::tokenizer(&common::pairs(200));
    let mut cfg = MxqConfig::tiny();
    cfg.stage1.text.vocab_size = tok.vocab_size();
    (Generator::new(&cfg, &device), cfg, tok, device)
}

fn codes(device: &Device) -> Tensor<2, Int> {
    Tensor::from_data(TensorData::new((0..4 * 72).map(|i| (i * 13 % 32) as i64).collect::<Vec<_>>(), [4, 72]), device)
}

#[test]
fn block_quantization_error_is_at_most_half_a_step() {
    let values: Vec<f32> = (0..1000).map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0).collect();
    let (q, scales) = quantize_blocks(&values);
    assert_eq!(scales.len(), 1000usize.div_ceil(BLOCK));
    let back = dequantize_blocks(&q, &scales);
    for (i, (a, b)) in values.iter().zip(&back).enumerate() {
        assert!((a - b).abs() <= scales[i / BLOCK] / 2.0 + 1e-6);
    }
}

#[test]
fn f32_bundle_is_exact_and_int8_bundle_is_close_and_smaller() {
    let (generator, cfg, tok, device) = setup();
    let reference = generator.decoder.decode(codes(&device));
    let f32_bytes = bundle::export(&generator, &cfg, &tok, Precision::F32).unwrap();
    let int8_bytes = bundle::export(&generator, &cfg, &tok, Precision::Int8).unwrap();
    assert!(int8_bytes.len() * 3 < f32_bytes.len(), "{} vs {}", int8_bytes.len(), f32_bytes.len());

    let exact = bundle::load(&f32_bytes, &device, LoadOptions::default()).unwrap();
    assert_eq!(exact.config, cfg);
    let out = exact.generator.decoder.decode(codes(&device));
    assert!((out.image - reference.image.clone()).abs().max().into_scalar::<f32>() < 1e-6);

    let int8 = bundle::load(&int8_bytes, &device, LoadOptions::default()).unwrap();
    let out = int8.generator.decoder.decode(codes(&device));
    let scale = reference.image.clone().abs().max().into_scalar::<f32>();
    let diff = (out.image - reference.image).abs().max().into_scalar::<f32>();
    assert!(diff < 0.05 * scale, "int8 image differs by {diff} (scale {scale})");
    let agree = out.logits.argmax(2).equal(reference.logits.argmax(2)).int().sum().into_scalar::<i64>();
    assert!(agree as f64 >= 0.9 * (4 * 64) as f64, "{agree}/256 tokens agree");
    // the prior survives too
    let p = int8.generator.prior.forward(codes(&device));
    let r = generator.prior.forward(codes(&device));
    assert!((p - r).abs().max().into_scalar::<f32>() < 0.05);
}

fn with_metadata(bytes: &[u8], key: &str, value: &str) -> Vec<u8> {
    let st = SafeTensors::deserialize(bytes).unwrap();
    let (_, header) = SafeTensors::read_metadata(bytes).unwrap();
    let mut meta = header.metadata().clone().unwrap();
    meta.insert(key.into(), value.into());
    let tensors: Vec<_> = st.tensors();
    safetensors::serialize(tensors.iter().map(|(n, v)| (n.clone(), v)), Some(meta)).unwrap()
}

#[test]
fn bad_bundles_give_named_errors() {
    let (generator, cfg, tok, device) = setup();
    let good = bundle::export(&generator, &cfg, &tok, Precision::Int8).unwrap();
    let err = |bytes: &[u8]| bundle::load(bytes, &device, LoadOptions::default()).unwrap_err().to_string();

    assert!(err(&good[..good.len() - 100]).contains("truncated"));
    assert!(err(&good[..5]).contains("truncated"));
    assert!(err(&[]).contains("truncated"));
    let mut flipped = good.clone();
    let at = flipped.len() - 1000;
    flipped[at] ^= 0x40;
    assert!(err(&flipped).contains("integrity"));
    assert!(err(&with_metadata(&good, "version", "1")).contains("version 1"));
    assert!(err(&with_metadata(&good, "version", "4")).contains("version 4"));
    assert!(err(&with_metadata(&good, "format", "other")).contains("format"));
    let foreign = safetensors::serialize(Vec::<(String, safetensors::tensor::TensorView)>::new(), None).unwrap();
    assert!(err(&foreign).contains("not an mxq bundle"));
    // weights of another shape than the config says
    let mut other = cfg.clone();
    other.stage1.image.hidden *= 2;
    let weights = mxq::weights::save_weights(&generator, Default::default()).unwrap();
    let e = mxq::weights::load_weights(&mut Generator::new(&other, &device), weights).unwrap_err().to_string();
    assert!(e.contains("do not fit"), "{e}");
}

#[test]
fn separate_codebooks_bundle_round_trips_without_cross_maps() {
    let (shared_generator, shared, tok, device) = setup();
    let cfg = shared.variant("separate").unwrap();
    let generator = Generator::new(&cfg, &device);
    let bytes = bundle::export(&generator, &cfg, &tok, Precision::F32).unwrap();
    let names: Vec<String> =
        SafeTensors::deserialize(&bytes).unwrap().names().into_iter().map(str::to_string).collect();
    assert!(!names.iter().any(|n| n.contains("cross_maps")), "{names:?}");
    let loaded = bundle::load(&bytes, &device, LoadOptions::default()).unwrap();
    assert_eq!(loaded.config, cfg);
    // text codes live in the second half of the 64-row codebook
    let codes = codes(&device)
        + Tensor::<2, Int>::from_data(
            TensorData::new((0..4 * 72).map(|i| if i % 72 >= 64 { 32i64 } else { 0 }).collect::<Vec<_>>(), [4, 72]),
            &device,
        );
    let (a, b) = (generator.decoder.decode(codes.clone()), loaded.generator.decoder.decode(codes.clone()));
    assert!((a.image - b.image).abs().max().into_scalar::<f32>() < 1e-6);
    assert_eq!(loaded.generator.prior.forward(codes).dims()[2], 64);
    // weights of the shared-codebook shape under a separate config: a named error, no panic
    let wrong = bundle::export(&shared_generator, &cfg, &tok, Precision::F32).unwrap();
    let err = bundle::load(&wrong, &device, LoadOptions::default()).unwrap_err().to_string();
    assert!(err.contains("codebook") || err.contains("cross_maps"), "{err}");
}

/// A text-first prior draws the caption's codes first; the bundle hands the decoders (and
/// the caller) stage 1's order, and the order travels in the file.
#[test]
fn a_text_first_prior_draws_the_caption_first_and_decodes_in_stage_1_order() {
    use mxq::config::SequenceOrder;
    use mxq::sample::SampleOptions;
    use mxq::sample::sampler::sample_codes;
    let (_, mut cfg, tok, device) = setup();
    cfg.prior.order = SequenceOrder::TextFirst;
    assert_eq!(cfg.prior_positions()[..9], [64, 65, 66, 67, 68, 69, 70, 71, 0]);
    let unified: Vec<u32> = (0..72).collect();
    let drawn = cfg.to_prior_order(&unified);
    assert_eq!(drawn[..8], [64, 65, 66, 67, 68, 69, 70, 71]);
    assert_eq!(cfg.to_unified_order(&drawn).into_iter().map(Option::unwrap).collect::<Vec<_>>(), unified);
    // eight drawn codes: the text positions are known, the image's not yet
    let partial = cfg.to_unified_order(&drawn[..8]);
    assert!(partial[..64].iter().all(Option::is_none) && partial[64..].iter().all(Option::is_some));
    let sequences = train::CodeSequences { codes: unified.iter().chain(&unified).copied().collect(), length: 72 };
    assert_eq!(sequences.in_prior_order(&cfg).get(1), drawn);

    let generator = Generator::new(&cfg, &device);
    let bytes = bundle::export(&generator, &cfg, &tok, Precision::F32).unwrap();
    let b = bundle::load(&bytes, &device, LoadOptions { packed_kernels: false }).unwrap();
    assert_eq!(b.config.prior.order, SequenceOrder::TextFirst);
    let opts = SampleOptions { temperature: 1.0, seed: 5, ..SampleOptions::default() };
    let drawn = sample_codes(&b.generator.prior, 3, 72, 8, &[], opts, &device);
    let pairs = b.generate(3, 3, opts, &device);
    for (pair, drawn) in pairs.iter().zip(&drawn) {
        assert_ne!(&pair.codes, drawn, "codes come back in stage 1's order, not as drawn");
        assert_eq!(&cfg.to_prior_order(&pair.codes), drawn);
    }
    let decoded = b.decode_codes(pairs.iter().map(|p| p.codes.clone()).collect(), &device);
    assert_eq!(
        decoded.iter().map(|p| &p.caption).collect::<Vec<_>>(),
        pairs.iter().map(|p| &p.caption).collect::<Vec<_>>()
    );
}

#[test]
fn nearby_seeds_draw_no_batch_in_common() {
    use mxq::sample::{SampleOptions, batches};
    let plan = |seed: u64| -> Vec<(usize, u64)> {
        batches(100, 16, SampleOptions { seed, ..SampleOptions::default() }).map(|(n, o)| (n, o.seed)).collect()
    };
    let plans: Vec<Vec<(usize, u64)>> = (0..8).map(plan).collect();
    for (s, p) in plans.iter().enumerate() {
        assert_eq!(p.iter().map(|b| b.0).collect::<Vec<_>>(), [16, 16, 16, 16, 16, 16, 4]);
        assert_eq!(p[0].1, s as u64, "the first batch keeps the seed (a single batch's pairs are what they were)");
        // with `seed + i`, seed s's batch 1 was seed s + 1's batch 0: other seeds gave mostly the same pairs
        for other in &plans[s + 1..] {
            assert!(p.iter().all(|b| other.iter().all(|o| o.1 != b.1)), "seed {s}: {p:?} meets {other:?}");
        }
    }
}

/// `combine`: the weighted sum of bundles' weights, every tensor (`mxq export --prior A --prior
/// B`): the mean of two, `1, 1, -1` of (a, b, a) gives b back exactly; bundles of another
/// config, an empty list and a weight that is not finite are refused by name.
#[test]
fn combined_bundles_hold_the_weighted_sum_of_their_weights() {
    use mxq::weights::{f32s, module_tensors};
    let (first, cfg, tok, device) = setup();
    let second = Generator::new(&cfg, &device);
    let (a, b) = (
        bundle::export(&first, &cfg, &tok, Precision::F32).unwrap(),
        bundle::export(&second, &cfg, &tok, Precision::F32).unwrap(),
    );
    let tensors = |bytes: &[u8]| {
        let loaded = bundle::load(bytes, &device, LoadOptions { packed_kernels: false }).unwrap();
        assert_eq!((loaded.config, loaded.precision), (cfg.clone(), Precision::F32));
        module_tensors(&loaded.generator).unwrap()
    };
    let (ta, tb) = (tensors(&a), tensors(&b));
    let mean = tensors(&bundle::combine(&[(&a, 0.5), (&b, 0.5)]).unwrap());
    let mut moved = 0;
    for (name, t) in &mean {
        let (x, y, m) = (f32s(&ta[name].data), f32s(&tb[name].data), f32s(&t.data));
        for ((x, y), m) in x.iter().zip(&y).zip(&m) {
            assert!((m - (x + y) / 2.0).abs() <= 1e-6 * (x.abs() + y.abs()), "{name}: {m} is not the mean of {x}, {y}");
        }
        moved += usize::from(x != y);
    }
    assert!(moved > 0, "two initialisations differ somewhere");
    assert_eq!(tensors(&bundle::combine(&[(&a, 1.0), (&b, 1.0), (&a, -1.0)]).unwrap()), tb);

    let error = |r: Result<Vec<u8>, mxq::Error>| r.unwrap_err().to_string();
    let mut wider = cfg.clone();
    wider.prior.layers += 1;
    let other = bundle::export(&Generator::new(&wider, &device), &wider, &tok, Precision::F32).unwrap();
    assert!(error(bundle::combine(&[(&a, 0.5), (&other, 0.5)])).contains("another config"));
    assert!(error(bundle::combine(&[])).contains("no bundles"));
    assert!(error(bundle::combine(&[(&a, f64::NAN)])).contains("weight"));
}

/// `Bundle::with_prior_of` (`mxq export --decoders B --prior P`): one bundle's decoders, stored
/// as they are, with another's prior and prior config; a prior of another stage 1 (here: its
/// own random codebook) is refused by name.
#[test]
fn a_bundle_takes_the_prior_of_another_of_its_stage_1() {
    use mxq::weights::module_tensors;
    let (first, cfg, tok, device) = setup();
    let mut deeper = cfg.clone();
    deeper.prior.layers += 1;
    let other = Generator::new(&deeper, &device);
    let fine_tune = Generator { decoder: first.decoder.clone(), prior: other.prior.clone() };
    let load = |g: &Generator, c: &MxqConfig| {
        let bytes = bundle::export(g, c, &tok, Precision::Int8).unwrap();
        bundle::load(&bytes, &device, LoadOptions { packed_kernels: false }).unwrap()
    };
    let (ours, theirs) = (load(&first, &cfg), load(&fine_tune, &deeper));
    let decoder = module_tensors(&ours.generator.decoder).unwrap();
    let prior = module_tensors(&theirs.generator.prior).unwrap();
    let (generator, config, tokenizer) = ours.with_prior_of(theirs).unwrap();
    assert_eq!((config, tokenizer.to_json()), (deeper.clone(), tok.to_json()));
    assert_eq!(module_tensors(&generator.decoder).unwrap(), decoder);
    assert_eq!(module_tensors(&generator.prior).unwrap(), prior);

    let stranger = load(&other, &deeper);
    let refused = load(&first, &cfg).with_prior_of(stranger).expect_err("another codebook is refused");
    let why = refused.to_string();
    assert!(why.contains("another stage 1") && why.contains("(the codebook differs)"), "{why}");
}
