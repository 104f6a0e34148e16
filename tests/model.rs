//! Model contracts: shapes, the quantizer, the prior's KV cache, and that a few optimizer
//! steps of each stage lower the loss.

mod common;

use common::{prior_losses, stage1_steps, tiny_options, tiny_run};

use burn::prelude::*;
use mxq::MxqConfig;
use mxq::data::PairSet;
use mxq::kernels::Simd;
use mxq::kernels::packed_prior::PackedPrior;
use mxq::model::codebook_upkeep::CodeCounts;
use mxq::model::cross_quantizer::CrossQuantizer;
use mxq::model::mxq_vae::MxqVae;
use mxq::model::prior::{KvCache, Prior};
use mxq::sample::sampler::CachedPrior;
use mxq::train::{self, TrainOptions};

fn max_abs_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
    (a - b).abs().max().into_scalar::<f32>()
}

#[test]
fn quantizer_picks_the_nearest_code_and_passes_gradients_straight_through() {
    let device = mxq::cpu().autodiff();
    let cfg = MxqConfig::tiny().stage1;
    let q = CrossQuantizer::new(&cfg, &device);
    let z = Tensor::<3>::random([2, 5, cfg.codebook.dim], burn::tensor::Distribution::Normal(0.0, 0.1), &device)
        .require_grad();
    let out = q.forward(z.clone());
    // brute force nearest code
    let codebook = q.codebook.val().into_data().try_into_vec_as::<f32>().unwrap();
    let zs = z.clone().into_data().try_into_vec_as::<f32>().unwrap();
    let codes = out.codes.clone().into_data().try_into_vec_as::<i64>().unwrap();
    let d = cfg.codebook.dim;
    for (n, &code) in codes.iter().enumerate() {
        let dist = |k: usize| (0..d).map(|i| (zs[n * d + i] - codebook[k * d + i]).powi(2)).sum::<f32>();
        let best = (0..cfg.codebook.size).min_by(|&a, &b| dist(a).total_cmp(&dist(b))).unwrap();
        assert!(dist(code as usize) <= dist(best) + 1e-6, "position {n}");
    }
    // forward value is the code vector, the gradient reaches z unchanged
    assert!(max_abs_diff(out.quantized.clone(), q.lookup(out.codes.clone())) < 1e-6);
    let weights = Tensor::<3>::random([2, 5, d], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
    let grads = (out.quantized * weights.clone()).sum().backward();
    let gz = z.grad(&grads).expect("z has a gradient");
    assert!(max_abs_diff(gz, weights.inner()) < 1e-6);
    assert_eq!(
        CrossQuantizer::new(&cfg, &device)
            .replace_codes(&[3], &vec![0.5; d])
            .codebook
            .val()
            .slice([3..4, 0..d])
            .mean()
            .into_scalar::<f32>(),
        0.5
    );
}

#[test]
fn ema_update_moves_taken_codes_to_their_mean_and_leaves_the_others() {
    let device = mxq::cpu();
    let cfg = MxqConfig::tiny().stage1;
    let d = cfg.codebook.dim;
    let q = CrossQuantizer::new(&cfg, &device);
    let before = q.codebook.val().into_data().try_into_vec_as::<f32>().unwrap();
    // code 1 takes two vectors (all 1.0 and all 3.0), code 4 one (all -2.0)
    let z: Vec<f32> = [1.0f32, 3.0, -2.0].iter().flat_map(|&v| vec![v; d]).collect();
    let z = Tensor::<3>::from_data(TensorData::new(z, [1, 3, d]), &device);
    let codes = Tensor::<2, Int>::from_data(TensorData::new(vec![1i64, 1, 4], [1, 3]), &device);
    // fresh counts are zero, so the first update puts each taken code on its mean
    let q = q.ema_update(z.clone(), codes.clone(), 0.99);
    let after = q.codebook.val().into_data().try_into_vec_as::<f32>().unwrap();
    assert!((after[d] - 2.0).abs() < 5e-3 && (after[4 * d] + 2.0).abs() < 5e-3, "{} {}", after[d], after[4 * d]);
    for k in [0, 2, 3, 5] {
        let moved = (0..d).map(|i| (after[k * d + i] - before[k * d + i]).abs()).fold(0f32, f32::max);
        assert!(moved < 1e-6, "untaken code {k} moved by {moved}");
    }
    let usage = q.usage.value_sync().into_data().try_into_vec_as::<f32>().unwrap();
    assert!((usage[1] - 0.02).abs() < 1e-6 && (usage[4] - 0.01).abs() < 1e-6);
    // a second update of code 1 with a far vector moves it only partly: the average has memory
    let far = Tensor::<3>::from_data(TensorData::new(vec![10.0f32; d], [1, 1, d]), &device);
    let q = q.ema_update(far, Tensor::from_data(TensorData::new(vec![1i64], [1, 1]), &device), 0.99);
    let moved = q.codebook.val().into_data().try_into_vec_as::<f32>().unwrap()[d];
    assert!(moved > 2.0 && moved < 10.0, "{moved}");
}

#[test]
fn cross_maps_start_as_the_identity_on_their_own_modality() {
    let device = mxq::cpu();
    let cfg = MxqConfig::tiny().stage1;
    let maps = mxq::model::cross_maps::CrossMaps::new(&cfg, cfg.cross_maps().unwrap(), &device);
    let (n, d) = (cfg.sequence_length(), cfg.codebook.dim);
    let codes = Tensor::<3>::random([2, n, d], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
    let mxq::model::cross_maps::Latents { image, text } = maps.forward(codes.clone());
    let own_image = codes.clone().slice([0..2, 0..64]).swap_dims(1, 2).reshape([2, d, 8, 8]);
    assert!(max_abs_diff(image, own_image) < 1e-5);
    let own_text = codes.slice([0..2, 64..n]).swap_dims(1, 2);
    assert!(max_abs_diff(text, own_text) < 1e-5);
}

#[test]
fn stage1_maps_pairs_to_72_codes_and_back() {
    let device = mxq::cpu();
    let cfg = MxqConfig::tiny();
    let pairs = common::pairs(3);
    let tok = common::tokenizer(&common::pairs(100));
    let mut s1 = cfg.stage1.clone();
    s1.text.vocab_size = tok.vocab_size();
    let vae = MxqVae::new(&s1, &device);
    let data = PairSet::new(&pairs, &tok);
    let codes = vae.encode(data.batch(&[0, 1, 2], None, &device));
    assert_eq!(codes.dims(), [3, 72]);
    let decoded = vae.decoder.decode(codes);
    assert_eq!(decoded.image.dims(), [3, 3, 64, 64]);
    assert_eq!(decoded.logits.dims(), [3, 64, tok.vocab_size()]);
}

#[test]
fn separate_codebooks_code_each_modality_on_its_own() {
    let device = mxq::cpu();
    let pairs = common::pairs(4);
    let tok = common::tokenizer(&common::pairs(100));
    let mut s1 = MxqConfig::tiny().variant("separate").unwrap().stage1;
    s1.text.vocab_size = tok.vocab_size();
    let k = s1.codebook.size as i64;
    let vae = MxqVae::new(&s1, &device);
    assert_eq!(vae.decoder.quantizer.codebook.dims(), [2 * s1.codebook.size, s1.codebook.dim]);
    let codes = vae.encode(PairSet::new(&pairs, &tok).batch(&[0, 1, 2, 3], None, &device));
    let codes = codes.into_data().try_into_vec_as::<i64>().unwrap();
    for (i, &c) in codes.iter().enumerate() {
        let want = if i % 72 < 64 { 0..k } else { k..2 * k };
        assert!(want.contains(&c), "position {} got code {c}, outside {want:?}", i % 72);
    }
    // no cross maps: the image comes from the image codes alone, the caption from the text codes
    let mut other = codes.clone();
    other.iter_mut().enumerate().filter(|(i, _)| i % 72 >= 64).for_each(|(_, c)| *c = k + (*c + 1 - k) % k);
    let decode = |codes: Vec<i64>| vae.decoder.decode(Tensor::from_data(TensorData::new(codes, [4, 72]), &device));
    let (a, b) = (decode(codes), decode(other));
    assert!(max_abs_diff(a.image, b.image) < 1e-6, "text codes reached the image decoder");
    assert!(max_abs_diff(a.logits, b.logits) > 1e-3, "the text decoder ignored the text codes");
}

#[test]
fn prior_cached_steps_equal_the_full_forward() {
    let device = mxq::cpu();
    let cfg = MxqConfig::tiny();
    let prior = Prior::new(&cfg.prior, 32, 72, &device);
    let tokens = Tensor::<2, Int>::from_data(
        TensorData::new((0..2 * 10).map(|i| (i * 7 % 33) as i64).collect::<Vec<_>>(), [2, 10]),
        &device,
    );
    let full = prior.forward(tokens.clone());
    let mut cache = KvCache::default();
    let steps: Vec<Tensor<3>> =
        (0..10).map(|t| prior.forward_cached(tokens.clone().slice([0..2, t..t + 1]), &mut cache)).collect();
    assert!(max_abs_diff(full, Tensor::cat(steps, 1)) < 1e-4);
}

/// Guidance twins join their sequences at the second part, with the first part's start
/// tokens computed once for one row (`add_start_rows`): every later step's logits equal those
/// of twins that ran beside every sequence from the start — on burn's layers to float
/// rounding, on the packed kernels (the CPU path of the CLI and the page) exactly.
#[test]
fn twins_joined_at_the_second_part_give_what_twins_run_from_the_start_give() {
    let device = mxq::cpu();
    let cfg = MxqConfig::tiny();
    let config = mxq::config::PriorConfig { d_model: 64, ..cfg.prior.clone() };
    let prior = Prior::new(&config, 64, 72, &device);
    assert!(twins_joined_gap(&prior, &device) < 1e-5, "burn's layers");
    let packed = PackedPrior::new(&prior, Simd::Plain).unwrap();
    assert_eq!(twins_joined_gap(&packed, &device), 0.0, "packed kernels");
}

/// The worst logit difference between the two ways of running 3 sequences' twins over a
/// first part of 5 codes and 3 steps after it.
fn twins_joined_gap<P: CachedPrior>(prior: &P, device: &Device) -> f32 {
    let (batch, first, start) = (3, 5, prior.start() as i64);
    let step = |ids: Vec<i64>| Tensor::<2, Int>::from_data(TensorData::new(ids.clone(), [ids.len(), 1]), device);
    let own = |s: usize| -> Vec<i64> {
        (0..batch).map(|b| if s == 0 { start } else { ((b * 7 + s * 3) % 32) as i64 }).collect()
    };
    let (mut beside, mut joined) = (P::Cache::default(), P::Cache::default());
    for s in 0..first {
        prior.forward_cached(step([own(s), vec![start; batch]].concat()), &mut beside);
        prior.forward_cached(step(own(s)), &mut joined);
    }
    prior.add_start_rows(&mut joined, batch, device);
    let mut worst = 0f32;
    for s in first..first + 3 {
        // a twin sees start tokens up to the second part's first code, then its sequence's codes
        let twins = if s == first { vec![start; batch] } else { own(s) };
        let a = prior.forward_cached(step([own(s), twins.clone()].concat()), &mut beside);
        let b = prior.forward_cached(step([own(s), twins].concat()), &mut joined);
        worst = worst.max(max_abs_diff(a, b));
    }
    worst
}

#[test]
fn a_grown_prior_computes_what_the_shallower_one_did_and_its_new_blocks_can_learn() {
    let device = mxq::cpu();
    let cfg = MxqConfig::tiny();
    let prior = Prior::new(&cfg.prior, 32, 72, &device);
    let tokens = Tensor::<2, Int>::from_data(
        TensorData::new((0..2 * 10).map(|i| (i * 5 % 33) as i64).collect::<Vec<_>>(), [2, 10]),
        &device,
    );
    let before = prior.forward(tokens.clone());
    let deeper = mxq::config::PriorConfig { layers: cfg.prior.layers + 2, ..cfg.prior.clone() };
    let grown = prior.grown(&deeper, &device);
    assert_eq!(grown.blocks.len(), cfg.prior.layers + 2);
    assert!(max_abs_diff(before.clone(), grown.forward(tokens.clone())) < 1e-6);
    // only the residual projections start at zero: the new blocks' other weights are drawn,
    // so training reaches them once the projections move
    let new = &grown.blocks[cfg.prior.layers];
    assert_eq!(new.proj.weight.val().abs().max().into_scalar::<f32>(), 0.0);
    assert_eq!(new.fc_out.bias.as_ref().unwrap().val().abs().max().into_scalar::<f32>(), 0.0);
    assert!(new.qkv.weight.val().abs().max().into_scalar::<f32>() > 0.0);
    assert!(new.fc.weight.val().abs().max().into_scalar::<f32>() > 0.0);
}

#[test]
fn a_few_steps_of_each_stage_lower_the_loss_and_resume_continues() {
    let (cfg, tok, data) = tiny_run(MxqConfig::tiny());
    let dir = tempfile::tempdir().unwrap();
    let s1 = dir.path().join("s1");
    let losses: Vec<f64> = stage1_steps(&s1, &cfg, &tok, &data, &tiny_options(20)).iter().map(|r| r.loss).collect();
    let first: f64 = losses[..3].iter().sum::<f64>() / 3.0;
    let last: f64 = losses[losses.len() - 3..].iter().sum::<f64>() / 3.0;
    assert_eq!(losses.len(), 20);
    assert!(last < first * 0.8, "stage 1 loss {first} → {last}");

    // resume: continue to 26 steps from the checkpoint
    let resumed: Vec<usize> = stage1_steps(&s1, &cfg, &tok, &data, &tiny_options(26)).iter().map(|r| r.step).collect();
    assert_eq!(resumed, (21..=26).collect::<Vec<_>>());
    let metrics = std::fs::read_to_string(dir.path().join("s1/metrics.jsonl")).unwrap();
    assert!(metrics.lines().all(|l| l.contains("\"perplexity\"") && l.contains("\"live_codes\"")));
    // a line every 5 steps, across the resume: steps 5, 10, …, 25, each with its losses
    let steps: Vec<serde_json::Value> = std::fs::read_to_string(dir.path().join("s1/steps.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(steps.iter().map(|v| v["step"].as_u64().unwrap()).collect::<Vec<_>>(), vec![5, 10, 15, 20, 25]);
    assert!(steps.iter().all(|v| v["metrics"]["image_mse"].as_f64().unwrap() > 0.0));

    let (vae, _) = train::stage1::load_stage1(&s1, &mxq::cpu()).unwrap();
    let sequences = train::encode_sequences(&vae, &data, 8, &mxq::cpu());
    assert_eq!((sequences.len(), sequences.length), (16, 72));
    let losses = prior_losses(&dir.path().join("prior"), &cfg, &tok, &sequences, &tiny_options(20));
    assert!(losses[19] < losses[0] * 0.8, "prior loss {} → {}", losses[0], losses[19]);
}

#[test]
fn separate_codebooks_train_restart_and_feed_a_prior_of_twice_the_vocabulary() {
    let (cfg, tok, data) = tiny_run(MxqConfig::tiny().variant("separate").unwrap());
    let k = cfg.stage1.codebook.size as u32;
    let dir = tempfile::tempdir().unwrap();
    let s1 = dir.path().join("s1");
    // a loss line at step 1, before the first checkpoint (the epoch ends at step 2)
    let options = TrainOptions { restart_dead_every: 5, log_every: 1, ..tiny_options(20) };
    let losses: Vec<f64> = stage1_steps(&s1, &cfg, &tok, &data, &options).iter().map(|r| r.loss).collect();
    let (first, last) = (losses[..3].iter().sum::<f64>(), losses[17..].iter().sum::<f64>());
    assert!(last < first * 0.8, "stage 1 loss {first} → {last}");
    let lines = std::fs::read_to_string(s1.join("steps.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 20);
    // after seeding and restarts, image positions still take image codes, text positions text codes
    let (vae, _) = train::stage1::load_stage1(&s1, &mxq::cpu()).unwrap();
    let sequences = train::encode_sequences(&vae, &data, 8, &mxq::cpu());
    let codes = &sequences.codes;
    assert!(codes.iter().enumerate().all(|(i, &c)| (i % 72 < 64) == (c < k)));
    assert!(codes.iter().any(|&c| c >= k));
    let losses = prior_losses(&dir.path().join("prior"), &cfg, &tok, &sequences, &tiny_options(3));
    assert_eq!(losses.len(), 3);
    let (prior, _) = train::prior::load_prior(&dir.path().join("prior"), &mxq::cpu()).unwrap();
    let logits = prior.forward(Tensor::from_data(TensorData::new(vec![0i64], [1, 1]), &mxq::cpu()));
    assert_eq!(logits.dims()[2], 2 * k as usize);
}

/// Codes that took nothing since the last check are restarted at encoder outputs far from
/// the live codes, and those outputs then pick them: the codebook is in use again.
#[test]
fn a_dead_code_restart_brings_codes_back_into_use() {
    let device = mxq::cpu();
    let cfg = MxqConfig::tiny().stage1;
    let (k, d) = (cfg.codebook.size, cfg.codebook.dim);
    // code 0 sits on the data, every other code far from it: only code 0 is ever taken
    let far: Vec<usize> = (1..k).collect();
    let q = CrossQuantizer::new(&cfg, &device)
        .replace_codes(&[0], &vec![0.0; d])
        .replace_codes(&far, &vec![50.0; far.len() * d]);
    let z = Tensor::<3>::random([2, cfg.sequence_length(), d], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
    let taken = |q: &CrossQuantizer| q.nearest(z.clone()).into_data().try_into_vec_as::<i64>().unwrap();
    let mut counts = CodeCounts::new(k);
    counts.add(&taken(&q));
    assert!(taken(&q).iter().all(|&c| c == 0), "before: only code 0 in use");
    let mut rng = mxq::rng::Rng::new(0, mxq::rng::Stream::Test(2));
    let q = counts.restart_dead(q, z.clone(), &cfg.code_groups(), &mut rng);
    assert_eq!(counts.restarted, k - 1, "every dead code restarted");
    assert!(counts.recent.iter().all(|&c| c == 0), "counting starts again");
    let live: std::collections::BTreeSet<i64> = taken(&q).into_iter().collect();
    assert!(live.len() >= k / 2, "after the restart {} of {k} codes are in use", live.len());
}
