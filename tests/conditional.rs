//! Drawing a caption: the caption's text codes start every sequence, each pair carries the
//! caption, and what cannot be drawn (a foreign stage 1, an image-first prior, a caption the
//! tokenizer cannot take whole) is a named error.

mod common;

use mxq::MxqConfig;
use mxq::bundle::{self, Bundle, Generator, LoadOptions, Precision};
use mxq::config::SequenceOrder;
use mxq::model::mxq_vae::MxqVae;
use mxq::model::prior::Prior;
use mxq::sample::SampleOptions;

/// A bundle and the stage-1 file it was made from (untrained weights), with `order`.
fn bundle_and_stage1(order: SequenceOrder, seed: u64) -> (Bundle, Vec<u8>, Vec<mxq::data::Pair>) {
    let device = mxq::cpu();
    device.seed(seed);
    let pairs = common::pairs(200);
    let tok = common::tokenizer(&pairs);
    let mut cfg = MxqConfig::tiny();
    cfg.stage1.text.vocab_size = tok.vocab_size();
    cfg.prior.order = order;
    let vae = MxqVae::new(&cfg.stage1, &device);
    let stage1 = bundle::export_stage1(&vae, &cfg, &tok, "{}".into(), Precision::Int8).unwrap();
    let generator = Generator { decoder: vae.decoder.clone(), prior: Prior::for_config(&cfg, &device) };
    let bytes = bundle::export(&generator, &cfg, &tok, Precision::Int8).unwrap();
    (bundle::load(&bytes, &device, LoadOptions::default()).unwrap(), stage1, pairs)
}

fn error<T>(result: Result<T, mxq::Error>) -> String {
    match result {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_given_caption_starts_every_sequence_and_is_every_pairs_caption() {
    let device = mxq::cpu();
    let (bundle, stage1, pairs) = bundle_and_stage1(SequenceOrder::TextFirst, 3);
    let encoder = bundle.encoder(bundle::load_stage1(&stage1, &device).unwrap()).unwrap();
    let caption = &pairs[0].caption;
    let given = bundle.given_caption(&encoder, caption, &device).unwrap();
    assert_eq!(given.prefix.len(), bundle.config.stage1.text_positions());
    assert_eq!(given, bundle.given_caption(&encoder, caption, &device).unwrap(), "encoding is deterministic");
    let other = bundle.given_caption(&encoder, &pairs[1].caption, &device).unwrap();
    assert_ne!(given.prefix, other.prefix, "another caption, other codes");

    let opts = SampleOptions { temperature: 1.0, seed: 7, ..SampleOptions::default() };
    let drawn = bundle.generate_from(&given, 4, 2, opts, &device);
    assert_eq!(drawn.len(), 4);
    for pair in &drawn {
        assert_eq!(&pair.caption, caption);
        assert_eq!(bundle.config.to_prior_order(&pair.codes)[..given.prefix.len()], given.prefix[..]);
    }
    assert_ne!(drawn[0].codes, drawn[1].codes, "each image is its own draw");
    // the unconditional pairs of the same seed start elsewhere
    let free = bundle.generate(4, 2, opts, &device);
    assert!(free.iter().any(|p| bundle.config.to_prior_order(&p.codes)[..given.prefix.len()] != given.prefix[..]));
}

#[test]
fn what_cannot_be_drawn_is_a_named_error() {
    let device = mxq::cpu();
    let (bundle, stage1, pairs) = bundle_and_stage1(SequenceOrder::TextFirst, 3);
    let encoder = bundle.encoder(bundle::load_stage1(&stage1, &device).unwrap()).unwrap();
    let given = |caption: &str| error(bundle.given_caption(&encoder, caption, &device));
    assert!(given("  ").contains("the caption is empty"));
    let unknown = given("a red 3 in the top left €€ ✓");
    assert!(unknown.contains("never saw") && unknown.contains("'€'") && unknown.contains("'✓'"), "{unknown}");
    let long = vec![pairs[0].caption.as_str(); 8].join(" and ");
    assert!(given(&long).contains("longer than 64 tokens"), "{}", given(&long));
    // a caption of other words is still drawn: other data sets have other grammars
    assert!(bundle.given_caption(&encoder, "three red digits", &device).is_ok());

    // the stage 1 of another run (another codebook) and an image-first prior are refused
    let (_, foreign, _) = bundle_and_stage1(SequenceOrder::TextFirst, 4);
    let refused = error(bundle.encoder(bundle::load_stage1(&foreign, &device).unwrap()));
    assert!(refused.contains("not this bundle's stage 1") && refused.contains("codebook"), "{refused}");
    let (image_first, stage1, _) = bundle_and_stage1(SequenceOrder::ImageFirst, 3);
    let encoder = image_first.encoder(bundle::load_stage1(&stage1, &device).unwrap()).unwrap();
    let refused = error(image_first.given_caption(&encoder, &pairs[0].caption, &device));
    assert!(refused.contains("caption-first prior"), "{refused}");
}
