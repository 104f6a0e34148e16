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
