//! The text path on its own: text encoder → (optionally the quantizer) → a learned 8 → 8
//! map over positions → text decoder, trained on captions only. This is the measurement
//! behind the text path's design (see `src/model/text_encoder.rs`): it shows whether a caption
//! survives the trip at all, before the image and the joint encoder share the codes.
//! Prints token accuracy, exact and valid captions on the first 500 test captions.
//!
//!     cargo run --release --example text_path -- TRAIN_PAIRS TEST_PAIRS
//!
//! Knobs (environment): STEPS (800), LR (2e-3), QUANT=1 (quantize the 8 positions with a
//! 256-entry codebook seeded from the first batch), DENSE=1 (replace encoder and decoder by
//! one dense layer each: the upper bound), TEXT_LAYERS (the preset's 4).

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig};
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use burn::tensor::activation::relu;
use mxq::config::MxqConfig;
use mxq::data::tokenizer::CaptionTokenizer;
use mxq::data::{parse_caption, read_pairs};
use mxq::model::cross_quantizer::CrossQuantizer;
use mxq::model::decoders::TextDecoder;
use mxq::model::text_encoder::TextEncoder;

#[derive(Module, Debug)]
struct TextPath {
    encoder: TextEncoder,
    decoder: TextDecoder,
    quantizer: CrossQuantizer,
    map: Linear,
    /// DENSE=1: embedding, flatten, one layer each way
    embed: Embedding,
    dense_in: Linear,
    dense_out: Linear,
    vocab: Linear,
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let captions = |i: usize| -> Result<Vec<String>, Box<dyn std::error::Error>> {
        let dir = args.get(i).ok_or("usage: text_path TRAIN_PAIRS TEST_PAIRS")?;
        Ok(read_pairs(std::path::Path::new(dir))?.into_iter().map(|p| p.caption).collect())
    };
    let (train, mut test) = (captions(1)?, captions(2)?);
    test.truncate(500);
    let (steps, lr, quant, dense) = (env("STEPS", 800), env("LR", 2e-3), env("QUANT", 0) == 1, env("DENSE", 0) == 1);
    let mut c = MxqConfig::demo().stage1;
    c.text.layers = env("TEXT_LAYERS", c.text.layers);
    let tok = CaptionTokenizer::train(train.iter().map(String::as_str), 128, c.text.token_length)?;
    c.text.vocab_size = tok.vocab_size();
    let (l, d, p) = (c.text.token_length, c.codebook.dim, c.text.positions);
    let device = mxq::cpu().autodiff();
    let mut m = TextPath {
        encoder: TextEncoder::new(&c, &device),
        decoder: TextDecoder::new(&c, &device),
        quantizer: CrossQuantizer::new(&c, &device),
        map: LinearConfig::new(p, p).init(&device),
        embed: EmbeddingConfig::new(c.text.vocab_size, 32).init(&device),
        dense_in: LinearConfig::new(l * 32, p * d).init(&device),
        dense_out: LinearConfig::new(p * d, l * 64).init(&device),
        vocab: LinearConfig::new(64, c.text.vocab_size).init(&device),
    };
    let tokens = |caps: &[String], ids: &[usize], dev: &Device| -> Tensor<2, Int> {
        let t: Vec<i64> = ids.iter().flat_map(|&i| tok.encode(&caps[i])).map(i64::from).collect();
        Tensor::from_data(TensorData::new(t, [ids.len(), l]), dev)
    };
    let encode = |m: &TextPath, t: Tensor<2, Int>| -> Tensor<3> {
        let b = t.dims()[0];
        if dense {
            m.dense_in.forward(m.embed.forward(t).reshape([b, l * 32])).reshape([b, p, d])
        } else {
            m.encoder.forward(t)
        }
    };
    let forward = |m: &TextPath, t: Tensor<2, Int>| -> (Tensor<3>, Tensor<1>) {
        let z = encode(m, t);
        let (z, extra) = if quant {
            let q = m.quantizer.forward(z);
            (q.quantized, q.codebook_loss + q.commitment_loss * 0.25)
        } else {
            (z.clone(), z.sum() * 0.0)
        };
        let latents = m.map.forward(z.swap_dims(1, 2)); // [B, D, 8]
        let b = latents.dims()[0];
        let logits = if dense {
            let h = relu(m.dense_out.forward(latents.reshape([b, d * p]))).reshape([b, l, 64]);
            m.vocab.forward(h)
        } else {
            m.decoder.forward(latents)
        };
        (logits, extra)
    };
    let mut optim: ModuleOptimizer = AdamWConfig::new().with_weight_decay(1e-4).init();
    let mut rng = mxq::rng::Rng::new(0, mxq::rng::Stream::Test(0));
    let started = std::time::Instant::now();
    for step in 0..steps {
        let mut ids: Vec<usize> = (0..train.len()).collect();
        rng.shuffle(&mut ids);
        let t = tokens(&train, &ids[..32], &device);
        if step == 0 && quant {
            let z = encode(&m, t.clone()).detach().into_data().try_into_vec_as::<f32>()?;
            let rows = z.len() / d;
            let vectors: Vec<f32> =
                (0..c.codebook.size).flat_map(|k| z[(k % rows) * d..(k % rows + 1) * d].to_vec()).collect();
            m.quantizer = m.quantizer.replace_codes(&(0..c.codebook.size).collect::<Vec<_>>(), &vectors);
        }
        let (logits, extra) = forward(&m, t.clone());
        let [b, _, v] = logits.dims();
        let ce = CrossEntropyLossConfig::new().init(&device).forward(logits.reshape([b * l, v]), t.reshape([b * l]));
        if step % 100 == 0 {
            eprintln!("step {step}: token CE {:.4}", ce.clone().into_scalar::<f32>());
        }
        let grads = GradientsParams::from_grads((ce + extra).backward(), &m);
        m = optim.step(lr * ((step + 1) as f64 / 100.0).min(1.0), m, grads);
    }
    let ids: Vec<usize> = (0..test.len()).collect();
    let t = tokens(&test, &ids, &device);
    let got = forward(&m, t.clone()).0.argmax(2).into_data().try_into_vec_as::<i64>()?;
    let want = t.into_data().try_into_vec_as::<i64>()?;
    let accuracy = got.iter().zip(&want).filter(|(a, b)| a == b).count() as f64 / got.len() as f64;
    let (mut exact, mut valid) = (0, 0);
    for (i, caption) in test.iter().enumerate() {
        let s = tok.decode(&got[i * l..(i + 1) * l].iter().map(|&x| x as u32).collect::<Vec<_>>());
        exact += usize::from(&s == caption);
        valid += usize::from(parse_caption(&s).is_ok());
    }
    let n = test.len() as f64;
    println!(
        "{}",
        serde_json::json!({"steps": steps, "lr": lr, "quantized": quant, "dense": dense, "text_layers": c.text.layers,
            "token_accuracy": accuracy, "exact": exact as f64 / n, "valid": valid as f64 / n,
            "seconds": started.elapsed().as_secs_f64()})
    );
    Ok(())
}
