//! The committed demo bundle loads, passes its integrity check and generates pairs.

use mxq::sampler::SampleOptions;

#[test]
fn shipped_demo_bundle_generates_pairs_deterministically() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo.mxq.safetensors");
    let bytes = std::fs::read(&path).expect("assets/demo.mxq.safetensors is committed");
    assert!(bytes.len() <= 8 << 20, "the demo bundle stays within 8 MB");
    let device = mxq::cpu();
    let bundle = mxq::bundle::load(&bytes, &device).unwrap();
    assert_eq!(bundle.config.preset, "demo");
    let opts = SampleOptions { seed: 5, top_k: 32, ..Default::default() };
    let a = bundle.generate(3, 3, opts, &device);
    let b = bundle.generate(3, 3, opts, &device);
    assert_eq!(a, b, "same seed, same pairs");
    for p in &a {
        assert_eq!(p.codes.len(), 72);
        assert!(p.image.iter().filter(|&&v| v > 32).count() > 20, "the image is not blank");
        assert!(!p.caption.is_empty());
    }
}

/// The shipped model's quality, at the `generate` default temperature: captions parse and
/// name the regions and colours the image shows (measured on 1,000 pairs: 96% and 88%).
#[test]
fn shipped_demo_bundle_captions_parse_and_match_regions_and_colours() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo.mxq.safetensors");
    let device = mxq::cpu();
    let bundle = mxq::bundle::load(&std::fs::read(&path).unwrap(), &device).unwrap();
    let opts = SampleOptions { seed: 1, temperature: 0.7, top_k: 0, top_p: 1.0 };
    let pairs = bundle.generate(32, 16, opts, &device);
    let (mut valid, mut layout) = (0, 0);
    for p in &pairs {
        let Ok(units) = mxq::data::parse_caption(&p.caption) else { continue };
        valid += 1;
        let mut said: Vec<_> = units.iter().map(|u| (u.region, u.colour)).collect();
        let mut seen = mxq::judge::read_layout(&p.image);
        said.sort();
        seen.sort();
        layout += usize::from(said == seen);
    }
    assert!(valid >= 26, "{valid} of 32 captions parse");
    assert!(layout >= 20, "{layout} of 32 captions name the regions and colours shown");
}

/// Natively on an AVX-512 CPU the bundle samples through the CPU kernels
/// (`mxq::sampling_kernels`): step by step they give burn's logits to float rounding, and
/// the same pairs. Checked for the shipped int8 bundle and its f32 re-export, for batches of
/// 1 and 3 (the kernels' few-rows and many-rows paths).
#[test]
fn packed_sampling_matches_burns_layers() {
    use mxq::bundle::Precision;
    use mxq::sampler::Sampling;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo.mxq.safetensors");
    let device = mxq::cpu();
    let shipped = mxq::bundle::load(&std::fs::read(&path).unwrap(), &device).unwrap();
    assert_eq!(shipped.generator.prior.is_packed(), mxq::sampling_kernels::simd_available());
    let f32_bytes =
        mxq::bundle::export(&shipped.generator, &shipped.config, &shipped.tokenizer, Precision::F32).unwrap();
    for (precision, bytes) in [("int8", std::fs::read(&path).unwrap()), ("f32", f32_bytes)] {
        let fast = mxq::bundle::load(&bytes, &device).unwrap();
        let mut plain = mxq::bundle::load(&bytes, &device).unwrap();
        plain.generator.prior.set_packed(None);
        for batch in [1, 3] {
            let opts = SampleOptions { seed: 9, temperature: 0.8, ..Default::default() };
            let (mut a, mut b) = (
                Sampling::new(&fast.generator.prior, batch, 72, opts),
                Sampling::new(&plain.generator.prior, batch, 72, opts),
            );
            while !a.done() {
                let la = a.logits(&fast.generator.prior, &device).into_data().try_into_vec_as::<f32>().unwrap();
                let lb = b.logits(&plain.generator.prior, &device).into_data().try_into_vec_as::<f32>().unwrap();
                let worst = la.iter().zip(&lb).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
                assert!(
                    worst < 1e-4,
                    "{precision}, batch {batch}, step {}: logits differ by {worst}",
                    a.codes()[0].len()
                );
                a.push(&la);
                b.push(&la);
            }
            assert_eq!(a.codes(), b.codes());
            assert_eq!(
                fast.generate(batch, batch, opts, &device),
                plain.generate(batch, batch, opts, &device),
                "{precision}"
            );
        }
    }
}
