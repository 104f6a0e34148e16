//! Model contracts: shapes, the quantizer, the prior's KV cache, and that a few optimizer
//! steps of each stage lower the loss.

mod common;

use burn::prelude::*;
use mxq::MxqConfig;
use mxq::cross_quantizer::CrossQuantizer;
use mxq::mxq_vae::MxqVae;
use mxq::prior::{KvCache, Prior};
use mxq::train::{self, PairSet, TrainOptions};

fn max_abs_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
    (a - b).abs().max().into_scalar::<f32>()
}

#[test]
fn quantizer_picks_the_nearest_code_and_passes_gradients_straight_through() {
    let device = mxq::cpu().autodiff();
    let cfg = MxqConfig::tiny().stage1;
    let q = CrossQuantizer::new(&cfg, &device);
    let z =
        Tensor::<3>::random([2, 5, cfg.code_dim], burn::tensor::Distribution::Normal(0.0, 0.1), &device).require_grad();
    let out = q.forward(z.clone());
    // brute force nearest code
    let codebook = q.codebook.val().into_data().try_into_vec_as::<f32>().unwrap();
    let zs = z.clone().into_data().try_into_vec_as::<f32>().unwrap();
    let codes = out.codes.clone().into_data().try_into_vec_as::<i64>().unwrap();
    let d = cfg.code_dim;
    for (n, &code) in codes.iter().enumerate() {
        let dist = |k: usize| (0..d).map(|i| (zs[n * d + i] - codebook[k * d + i]).powi(2)).sum::<f32>();
        let best = (0..cfg.codebook_size).min_by(|&a, &b| dist(a).total_cmp(&dist(b))).unwrap();
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
fn stage1_maps_pairs_to_72_codes_and_back() {
    let device = mxq::cpu();
    let cfg = MxqConfig::tiny();
    let pairs = common::pairs(3);
    let tok = common::tokenizer(&common::pairs(100));
    let mut s1 = cfg.stage1.clone();
    s1.vocab_size = tok.vocab_size();
    let vae = MxqVae::new(&s1, &device);
    let data = PairSet::new(&pairs, &tok);
    let (images, tokens) = data.batch(&[0, 1, 2], None, &device);
    let codes = vae.encode(images, tokens);
    assert_eq!(codes.dims(), [3, 72]);
    let decoded = vae.decoder.decode(codes);
    assert_eq!(decoded.image.dims(), [3, 3, 64, 64]);
    assert_eq!(decoded.logits.dims(), [3, 64, tok.vocab_size()]);
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

fn tiny_options(steps: usize) -> TrainOptions {
    TrainOptions {
        epochs: 100,
        batch_size: 8,
        learning_rate: 2e-3,
        warmup_steps: 1,
        max_steps: Some(steps),
        checkpoint_every: 1000,
        ..TrainOptions::default()
    }
}

#[test]
fn a_few_steps_of_each_stage_lower_the_loss_and_resume_continues() {
    let pairs = common::pairs(16);
    let tok = common::tokenizer(&common::pairs(200));
    let mut cfg = MxqConfig::tiny();
    cfg.stage1.vocab_size = tok.vocab_size();
    let data = PairSet::new(&pairs, &tok);
    let dir = tempfile::tempdir().unwrap();
    let device = mxq::cpu().autodiff();
    let mut losses = Vec::new();
    let mut on_step = |r: &train::StepReport| losses.push(r.loss);
    train::train_stage1(
        &dir.path().join("s1"),
        &cfg,
        &tok,
        &data,
        &tiny_options(20),
        &device,
        &mut on_step,
        &mut |_| {},
    )
    .unwrap();
    let first: f64 = losses[..3].iter().sum::<f64>() / 3.0;
    let last: f64 = losses[losses.len() - 3..].iter().sum::<f64>() / 3.0;
    assert_eq!(losses.len(), 20);
    assert!(last < first * 0.8, "stage 1 loss {first} → {last}");

    // resume: continue to 26 steps from the checkpoint
    let mut resumed = Vec::new();
    let mut on_step = |r: &train::StepReport| resumed.push(r.step);
    train::train_stage1(
        &dir.path().join("s1"),
        &cfg,
        &tok,
        &data,
        &tiny_options(26),
        &device,
        &mut on_step,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(resumed, (21..=26).collect::<Vec<_>>());
    let metrics = std::fs::read_to_string(dir.path().join("s1/metrics.jsonl")).unwrap();
    assert!(metrics.lines().all(|l| l.contains("\"perplexity\"") && l.contains("\"live_codes\"")));

    let (vae, _) = train::load_stage1(&dir.path().join("s1"), &mxq::cpu()).unwrap();
    let codes = train::encode_codes(&vae, &data, 8, &mxq::cpu());
    assert_eq!(codes.len(), 16 * 72);
    let mut losses = Vec::new();
    let mut on_step = |r: &train::StepReport| losses.push(r.loss);
    train::train_prior(
        &dir.path().join("prior"),
        &cfg,
        &tok,
        &codes,
        &tiny_options(20),
        &device,
        &mut on_step,
        &mut |_| {},
    )
    .unwrap();
    assert!(losses[19] < losses[0] * 0.8, "prior loss {} → {}", losses[0], losses[19]);
}
