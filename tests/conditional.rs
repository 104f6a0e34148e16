//! Drawing a caption, captioning an image: the given half's codes start every sequence, each
//! pair carries the given half, and what cannot be done (a foreign stage 1, a prior of the
//! wrong order, a caption the tokenizer cannot take whole, an image of another size) is a
//! named error. Classifier-free guidance: the prior's loss
//! without the first part, and guided sampling.

mod common;

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};
use mxq::MxqConfig;
use mxq::bundle::{self, Bundle, Generator, LoadOptions, Precision};
use mxq::config::SequenceOrder;
use mxq::model::mxq_vae::MxqVae;
use mxq::model::prior::Prior;
use mxq::sample::SampleOptions;

/// The CPU device's generator is one for the whole process and the tests run in parallel: a
/// test seeds it and draws its weights holding this, or another test's draws interleave
/// with its own and its weights change from run to run.
static DEVICE_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A bundle and the stage-1 file it was made from (untrained weights), with `order`.
fn bundle_and_stage1(order: SequenceOrder, seed: u64) -> (Bundle, Vec<u8>, Vec<mxq::data::Pair>) {
    let (mut bundles, stage1, pairs) = bundles_and_stage1(&[order], seed);
    (bundles.remove(0), stage1, pairs)
}

/// Bundles of each of `orders` on one stage 1 (drawn once), and its stage-1 file.
fn bundles_and_stage1(orders: &[SequenceOrder], seed: u64) -> (Vec<Bundle>, Vec<u8>, Vec<mxq::data::Pair>) {
    let device = mxq::cpu();
    let _drawing = DEVICE_RNG.lock().unwrap_or_else(|e| e.into_inner());
    device.seed(seed);
    let pairs = common::pairs(200);
    let tok = common::tokenizer(&pairs);
    let mut cfg = MxqConfig::tiny();
    cfg.stage1.text.vocab_size = tok.vocab_size();
    let vae = MxqVae::new(&cfg.stage1, &device);
    let stage1 = bundle::export_stage1(&vae, &cfg, &tok, "{}".into(), Precision::Int8).unwrap();
    let bundles = orders
        .iter()
        .map(|&order| {
            cfg.prior.order = order;
            let generator = Generator { decoder: vae.decoder.clone(), prior: Prior::for_config(&cfg, &device) };
            let bytes = bundle::export(&generator, &cfg, &tok, Precision::Int8).unwrap();
            bundle::load(&bytes, &device, LoadOptions::default()).unwrap()
        })
        .collect();
    (bundles, stage1, pairs)
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
    let encoder = bundle.encoder(bundle::load_encoder(&stage1, &device).unwrap()).unwrap();
    let caption = &pairs[0].caption;
    let given = bundle.given_caption(&encoder, caption, &device).unwrap();
    assert_eq!(given.prefix.len(), bundle.config.stage1.text_positions());
    assert_eq!(given, bundle.given_caption(&encoder, caption, &device).unwrap(), "encoding is deterministic");
    let other = bundle.given_caption(&encoder, &pairs[1].caption, &device).unwrap();
    assert_ne!(given.prefix, other.prefix, "another caption, other codes");

    let opts = SampleOptions { temperature: 1.0, seed: 7, ..SampleOptions::default() };
    let drawn = bundle.generate_from(&given, 4, 2, opts, None, &device);
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
    let encoder = bundle.encoder(bundle::load_encoder(&stage1, &device).unwrap()).unwrap();
    let given = |caption: &str| error(bundle.given_caption(&encoder, caption, &device));
    assert!(given("  ").contains("the caption is empty"));
    let unknown = given("a red 3 in the top left €€ ✓");
    assert!(unknown.contains("never saw") && unknown.contains("'€'") && unknown.contains("'✓'"), "{unknown}");
    // whitespace other than a space is a character like the rest, not a separator
    let tab = given("a red 3\tin the top left");
    assert!(tab.contains("never saw") && tab.contains("'\\t'"), "{tab}");
    assert!(given("a red 3 in the top\u{a0}left").contains("never saw"));
    let long = [pairs[0].caption.as_str(); 8].join(" and ");
    assert!(given(&long).contains("longer than 64 tokens"), "{}", given(&long));
    // a caption of megabytes is refused by its length before anything is encoded
    let huge = "a".repeat(8 << 20);
    assert!(given(&huge).contains("longer than 64 tokens"));
    // a caption of other words is still drawn: other data sets have other grammars
    assert!(bundle.given_caption(&encoder, "three red digits", &device).is_ok());

    // the stage 1 of another run (another codebook) and an image-first prior are refused
    let (_, foreign, _) = bundle_and_stage1(SequenceOrder::TextFirst, 4);
    let refused = error(bundle.encoder(bundle::load_encoder(&foreign, &device).unwrap()));
    assert!(refused.contains("not this bundle's stage 1") && refused.contains("codebook"), "{refused}");
    let (image_first, stage1, _) = bundle_and_stage1(SequenceOrder::ImageFirst, 3);
    let encoder = image_first.encoder(bundle::load_encoder(&stage1, &device).unwrap()).unwrap();
    let refused = error(image_first.given_caption(&encoder, &pairs[0].caption, &device));
    assert!(refused.contains("caption-first prior"), "{refused}");
}

#[test]
fn a_given_image_starts_every_sequence_and_is_every_pairs_image() {
    let device = mxq::cpu();
    let (bundle, stage1, pairs) = bundle_and_stage1(SequenceOrder::ImageFirst, 3);
    let encoder = bundle.encoder(bundle::load_encoder(&stage1, &device).unwrap()).unwrap();
    let given = bundle.given_image(&encoder, &pairs[0].image, &device).unwrap();
    let image_codes = bundle.config.stage1.sequence_length() - bundle.config.stage1.text_positions();
    assert_eq!(given.prefix.len(), image_codes);
    assert_eq!(given, bundle.given_image(&encoder, &pairs[0].image, &device).unwrap(), "encoding is deterministic");
    // (untrained, every image here quantizes to one code; tests/shipped_bundle.rs checks that
    // the shipped captioner tells images apart)

    let greedy = SampleOptions { temperature: 0.0, ..SampleOptions::default() };
    let captioned = bundle.generate_from(&given, 2, 2, greedy, None, &device);
    for pair in &captioned {
        assert_eq!(pair.image, pairs[0].image);
        assert_eq!(bundle.config.to_prior_order(&pair.codes)[..image_codes], given.prefix[..]);
    }
    assert_eq!(captioned[0].caption, captioned[1].caption, "greedy: one caption");

    // a caption-first prior cannot caption, and an image of another size is refused by name
    let refused = error(bundle.given_image(&encoder, &pairs[0].image[..100], &device));
    assert!(refused.contains("64×64 RGB") && refused.contains("not 100"), "{refused}");
    let (caption_first, stage1, _) = bundle_and_stage1(SequenceOrder::TextFirst, 3);
    let encoder = caption_first.encoder(bundle::load_encoder(&stage1, &device).unwrap()).unwrap();
    let refused = error(caption_first.given_image(&encoder, &pairs[0].image, &device));
    assert!(refused.contains("image-first prior"), "{refused}");
}

#[test]
fn hidden_first_parts_are_neither_read_nor_predicted() {
    let device = mxq::cpu();
    let mut cfg = MxqConfig::tiny();
    cfg.prior.order = SequenceOrder::TextFirst;
    let prior = {
        let _drawing = DEVICE_RNG.lock().unwrap_or_else(|e| e.into_inner());
        device.seed(5);
        Prior::for_config(&cfg, &device)
    };
    let n = cfg.stage1.sequence_length();
    let first = cfg.first_part();
    let sequences = |fill: i64| {
        let codes: Vec<i64> = (0..2 * n).map(|i| if i % n < first { fill } else { (i * 7 % 31) as i64 }).collect();
        burn::tensor::Tensor::<2, burn::tensor::Int>::from_data(burn::tensor::TensorData::new(codes, [2, n]), &device)
    };
    let value = |t: burn::tensor::Tensor<1>| t.into_scalar::<f32>();
    // nothing hidden: the plain loss
    let plain = value(prior.loss(sequences(3)));
    assert!((value(prior.loss_hiding(sequences(3), &[false, false], first, false)) - plain).abs() < 1e-6);
    // hidden: the first part's codes change nothing, and the loss is another
    let hidden = value(prior.loss_hiding(sequences(3), &[true, true], first, false));
    assert!((value(prior.loss_hiding(sequences(17), &[true, true], first, false)) - hidden).abs() < 1e-6);
    assert!((hidden - plain).abs() > 1e-4, "{hidden} {plain}");
}

#[test]
fn guidance_keeps_the_first_part_and_steers_the_rest() {
    let device = mxq::cpu();
    let (plain, _, _) = bundle_and_stage1(SequenceOrder::TextFirst, 3);
    let opts = SampleOptions { temperature: 1.0, seed: 11, ..SampleOptions::default() };
    let guided = SampleOptions { guidance: 3.0, ..opts };
    let refused = error(plain.check_options(&guided));
    assert!(refused.contains("--unconditional"), "{refused}");
    assert!(plain.check_options(&opts).is_ok());
    assert_eq!(plain.default_options().guidance, 1.0, "no unconditional training, no guidance by default");
    assert!(error(plain.check_options(&SampleOptions { guidance: f32::NAN, ..opts })).contains("guidance NaN"));

    // the same prior, declared trained with unconditional sequences (the sampler does not care how)
    let mut bytes_cfg = plain.config.clone();
    bytes_cfg.prior.unconditional = 0.1;
    let generator = Generator { decoder: plain.generator.decoder.clone(), prior: plain.generator.prior.clone() };
    let bytes = bundle::export(&generator, &bytes_cfg, &plain.tokenizer, Precision::F32).unwrap();
    for packed_kernels in [false, true] {
        let b = bundle::load(&bytes, &device, LoadOptions { packed_kernels }).unwrap();
        b.check_options(&guided).unwrap();
        assert_eq!(b.default_options().guidance, mxq::sample::DEFAULT_GUIDANCE);
        let first = b.config.first_part();
        let (a, g) = (b.generate(4, 4, opts, &device), b.generate(4, 4, guided, &device));
        let order = |p: &mxq::sample::GeneratedPair| b.config.to_prior_order(&p.codes);
        for (a, g) in a.iter().zip(&g) {
            assert_eq!(order(a)[..first], order(g)[..first], "the first part is drawn as without guidance");
        }
        assert!(a.iter().zip(&g).any(|(a, g)| order(a)[first..] != order(g)[first..]), "guidance changes the rest");
        let once = SampleOptions { guidance: 1.0, ..guided };
        assert_eq!(b.generate(4, 4, once, &device), a, "guidance 1 is the prior as it is");
    }
}

#[test]
fn the_image_after_a_caption_is_drawn_at_the_second_temperature() {
    let device = mxq::cpu();
    let (caption_first, _, _) = bundle_and_stage1(SequenceOrder::TextFirst, 3);
    let second = caption_first.default_options().second_temperature;
    assert_eq!(second, Some(mxq::sample::DEFAULT_SECOND_TEMPERATURE), "a caption-first prior's image codes");
    let (image_first, _, _) = bundle_and_stage1(SequenceOrder::ImageFirst, 3);
    assert_eq!(image_first.default_options().second_temperature, None, "an image-first prior's captions: not sharper");

    let opts = SampleOptions { temperature: 1.0, seed: 11, ..SampleOptions::default() };
    let greedy_image = SampleOptions { second_temperature: Some(0.0), ..opts };
    let (a, g) = (caption_first.generate(6, 6, opts, &device), caption_first.generate(6, 6, greedy_image, &device));
    let first = caption_first.config.first_part();
    let order = |p: &mxq::sample::GeneratedPair| caption_first.config.to_prior_order(&p.codes);
    for (a, g) in a.iter().zip(&g) {
        assert_eq!(order(a)[..first], order(g)[..first], "the captions are drawn as before");
    }
    assert!(a.iter().zip(&g).any(|(a, g)| order(a)[first..] != order(g)[first..]), "the images are drawn otherwise");
}

/// Stage 1 mixes the caption into the image codes a little (docs/consistency.md: 97.5% of the
/// committed stage 1's image codes stay the same with the caption masked), which is why a conditional
/// prior trains on the codes of the image alone: those captioning gives it. Checked on the
/// committed stage-1 file, where the two differ (untrained weights hardly mix).
#[test]
fn a_conditional_prior_trains_on_the_codes_captioning_gives_it_and_draws_no_whole_pairs() {
    let device = mxq::cpu();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let stage1 = std::fs::read(root.join("assets/stage1/demo-stage1.mxq.safetensors")).unwrap();
    let file = bundle::load_stage1(&stage1, &device).unwrap();
    let (vae, tok) = (file.vae.clone(), file.tokenizer.clone());
    let mut cfg = file.config.clone();
    cfg.prior.order = SequenceOrder::ImageFirst;
    cfg.prior.conditional = true;
    let prior = {
        let _drawing = DEVICE_RNG.lock().unwrap_or_else(|e| e.into_inner());
        device.seed(9);
        Prior::for_config(&cfg, &device)
    };
    let generator = Generator { decoder: vae.decoder.clone(), prior: prior.clone() };
    let bundle = bundle::load(
        &bundle::export(&generator, &cfg, &tok, Precision::Int8).unwrap(),
        &device,
        LoadOptions::default(),
    )
    .unwrap();
    let encoder = bundle.encoder(bundle::load_encoder(&stage1, &device).unwrap()).unwrap();
    let pairs = mxq::eval::protocol::TestSplit::load(&root.join("data/mnist")).unwrap().pairs(0..24);
    let pairs: Vec<mxq::data::Pair> =
        pairs.into_iter().map(|p| mxq::data::Pair { image: p.image, caption: p.caption }).collect();
    let (image, n) = (cfg.stage1.image_positions(), cfg.stage1.sequence_length());
    let data = mxq::data::batch::PairSet::new(&pairs, &tok);
    let whole = mxq::train::encode_sequences(&vae, &data, 8, &device);
    let trained = mxq::train::encode_for_prior(&vae, &data, 8, &device, &cfg);
    // what `mxq train decoders --given image` reads: every code from the image alone
    let alone = mxq::train::encode_alone(&vae, &data, 8, &device, mxq::data::masking::Half::Image);
    for (i, pair) in pairs.iter().enumerate() {
        // the image codes it learns from are those `mxq caption` gives it for the image;
        // the caption codes, the whole pair's, which decode to the caption
        let given = bundle.given_image(&encoder, &pair.image, &device).unwrap();
        assert_eq!(&trained.get(i)[..image], &given.prefix[..], "pair {i}");
        assert_eq!(&trained.get(i)[image..], &whole.get(i)[image..], "pair {i}");
        assert_eq!((&alone.get(i)[..image], alone.get(i).len()), (&given.prefix[..], n), "pair {i}");
    }
    let masked = (0..pairs.len()).filter(|&i| alone.get(i)[image..] != whole.get(i)[image..]).count();
    assert!(masked > 0, "the masked caption's codes are not the caption's");
    let differ = (0..pairs.len()).filter(|&i| trained.get(i)[..image] != whole.get(i)[..image]).count();
    assert!(differ > 0, "the caption moves some image codes, so the check above can fail");
    let mut plain = cfg.clone();
    plain.prior.conditional = false;
    assert_eq!(mxq::train::encode_for_prior(&vae, &data, 8, &device, &plain), whole);

    // its loss: the mean over the second part alone, the first read but not predicted
    let codes: Vec<i64> = trained.codes[..2 * n].iter().map(|&c| c as i64).collect();
    let sequences = || Tensor::<2, Int>::from_data(TensorData::new(codes.clone(), [2, n]), &device);
    let start = Tensor::<2, Int>::full([2, 1], prior.start() as i64, &device);
    let inputs = Tensor::cat(vec![start, sequences().slice([0..2, 0..n - 1])], 1);
    let log_p = log_softmax(prior.forward(inputs), 2).into_data().try_to_vec::<f32>().unwrap();
    let k = prior.vocab;
    let picked = |b: usize, j: usize| -log_p[(b * n + j) * k + codes[b * n + j] as usize];
    let second: Vec<f32> = (0..2).flat_map(|b| (image..n).map(move |j| picked(b, j))).collect();
    let expected = second.iter().sum::<f32>() / second.len() as f32;
    let got = prior.loss_hiding(sequences(), &[false, false], image, true).into_scalar::<f32>();
    assert!((got - expected).abs() < 1e-4, "{got} {expected}");
    assert!(
        (got - prior.loss(sequences()).into_scalar::<f32>()).abs() > 1e-5,
        "the first part's codes are not counted"
    );

    // whole pairs are refused by name; an image is captioned
    let refused = error(bundle.check_given(&mxq::sample::conditional::Given::default()));
    assert!(refused.contains("conditional") && refused.contains("an image to caption"), "{refused}");
    let given = bundle.given_image(&encoder, &pairs[0].image, &device).unwrap();
    assert!(bundle.check_given(&given).is_ok());
    let opts = SampleOptions { temperature: 0.0, ..SampleOptions::default() };
    assert_eq!(&bundle.generate_from(&given, 1, 1, opts, None, &device)[0].codes[..image], &given.prefix[..]);
}

/// An encoder file is the stage-1 file's encode half: the same codes for what is given, in
/// fewer bytes (fewer still with its text map in 4 bits); each kind of file is refused by name
/// where another is wanted.
#[test]
fn an_encoder_file_encodes_as_its_stage_1_file_does() {
    let device = mxq::cpu();
    let (bundle, stage1, pairs) = bundle_and_stage1(SequenceOrder::TextFirst, 3);
    let file = bundle::load_stage1(&stage1, &device).unwrap();
    let encoder_bytes =
        bundle::export_encoder(&file.vae.clone().into_coder(), &file.config, &file.tokenizer, Precision::Int8).unwrap();
    assert!(encoder_bytes.len() < stage1.len() * 3 / 4, "{} against {} bytes", encoder_bytes.len(), stage1.len());
    let from_stage1 = bundle.encoder(bundle::load_encoder(&stage1, &device).unwrap()).unwrap();
    let from_encoder = bundle.encoder(bundle::load_encoder(&encoder_bytes, &device).unwrap()).unwrap();
    for pair in &pairs[..4] {
        let (a, b) = (
            bundle.given_caption(&from_stage1, &pair.caption, &device).unwrap(),
            bundle.given_caption(&from_encoder, &pair.caption, &device).unwrap(),
        );
        assert_eq!(a.prefix, b.prefix, "{}", pair.caption);
    }
    // `--int4` stores the text encoder's map in 4 bits: half a byte less per weight of it
    let int4 =
        bundle::export_encoder(&file.vae.clone().into_coder(), &file.config, &file.tokenizer, Precision::Int4).unwrap();
    let t = &file.config.stage1.text;
    let map = t.token_length * t.embed * t.positions * file.config.stage1.codebook.dim;
    assert!(
        int4.len() + map * 4 / 10 < encoder_bytes.len(),
        "int4 {} against int8 {} bytes",
        int4.len(),
        encoder_bytes.len()
    );
    bundle.encoder(bundle::load_encoder(&int4, &device).unwrap()).expect("the 4-bit file belongs to its bundle");
    let refused = error(bundle::load_stage1(&encoder_bytes, &device));
    assert!(refused.contains("encoder file") && refused.contains("mxq export --stage1"), "{refused}");
    let refused = error(bundle::load(&encoder_bytes, &device, LoadOptions::default()));
    assert!(refused.contains("encoder file") && refused.contains("--stage1"), "{refused}");
    let generator = Generator { decoder: file.vae.decoder.clone(), prior: Prior::for_config(&file.config, &device) };
    let bundle_bytes = bundle::export(&generator, &file.config, &file.tokenizer, Precision::Int8).unwrap();
    let refused = error(bundle::load_encoder(&bundle_bytes, &device));
    assert!(refused.contains("is a bundle"), "{refused}");
}

/// Scoring a sequence step by step (`sample/rerank.rs`, what best-of-K ranks candidates by)
/// sums the log-probabilities a full pass of the prior gives its codes, from the position
/// asked on; the packed prior scores as burn's layers do.
#[test]
fn scoring_sums_the_log_probabilities_of_a_full_pass() {
    use mxq::sample::rerank::score_codes;
    let device = mxq::cpu();
    let (bundle, _, _) = bundle_and_stage1(SequenceOrder::TextFirst, 5);
    let prior = &bundle.generator.prior;
    let (n, vocab) = (bundle.config.stage1.sequence_length(), prior.vocab);
    let mut rng = mxq::rng::Rng::new(5, mxq::rng::Stream::Test(41));
    let sequences: Vec<Vec<u32>> =
        (0..3).map(|_| (0..n).map(|_| (rng.next_u64() % vocab as u64) as u32).collect()).collect();
    let inputs: Vec<i64> = sequences
        .iter()
        .flat_map(|s| std::iter::once(prior.start() as i64).chain(s[..n - 1].iter().map(|&c| c as i64)))
        .collect();
    let inputs = Tensor::<2, Int>::from_data(TensorData::new(inputs, [3, n]), &device);
    let log_p = log_softmax(prior.forward(inputs), 2).into_data().try_into_vec_as::<f32>().unwrap(); // [3, n, vocab]
    for from in [0, bundle.config.first_part()] {
        let expected: Vec<f32> =
            (0..3).map(|b| (from..n).map(|j| log_p[(b * n + j) * vocab + sequences[b][j] as usize]).sum()).collect();
        let stepwise = score_codes(prior, sequences.clone(), from, &device);
        for (s, e) in stepwise.iter().zip(&expected) {
            assert!((s - e).abs() < 1e-3 * e.abs().max(1.0), "from {from}: {stepwise:?} vs {expected:?}");
        }
        if let Some(packed) = &bundle.packed_prior {
            let packed = score_codes(packed, sequences.clone(), from, &device);
            for (p, e) in packed.iter().zip(&expected) {
                assert!((p - e).abs() < 1e-3 * e.abs().max(1.0), "packed, from {from}: {packed:?} vs {expected:?}");
            }
        }
    }
}

/// Best of K: the captions a caption-first prior draws are the ones it draws without
/// reranking (only which image shows each is chosen), a captioner keeps its image, one
/// candidate is no reranking at all, each group keeps its highest score, and what cannot
/// score the candidates is a named error.
#[test]
fn best_of_k_keeps_what_is_drawn_first_and_each_pairs_best_candidate() {
    use mxq::sample::conditional::Given;
    use mxq::sample::rerank::{Rerank, Scored};
    let device = mxq::cpu();
    let (bundles, stage1, pairs) = bundles_and_stage1(&[SequenceOrder::TextFirst, SequenceOrder::ImageFirst], 3);
    let [drawer, captioner]: [Bundle; 2] = bundles.try_into().ok().unwrap();
    let opts = SampleOptions { temperature: 1.0, seed: 11, ..SampleOptions::default() };
    let whole = Given::default();
    let plain = drawer.generate_from(&whole, 5, 5, opts, None, &device);
    // 20 candidates: 3 pairs' worth per chunk, so the 5 pairs take a second, partial chunk
    let rerank = Rerank::new(&drawer, &captioner, 20, Scored::SecondPart).unwrap();
    assert_eq!(rerank.pairs_per_chunk(&opts), 3);
    let best = drawer.generate_from(&whole, 5, 5, opts, Some(&rerank), &device);
    let first = drawer.config.first_part();
    let firsts = |pairs: &[mxq::sample::GeneratedPair]| -> Vec<Vec<u32>> {
        pairs.iter().map(|p| drawer.config.to_prior_order(&p.codes)[..first].to_vec()).collect()
    };
    assert_eq!(firsts(&best), firsts(&plain), "the captions' codes are drawn as without reranking");
    assert_ne!(best.iter().map(|p| &p.codes).collect::<Vec<_>>(), plain.iter().map(|p| &p.codes).collect::<Vec<_>>());
    assert_eq!(best, drawer.generate_from(&whole, 5, 5, opts, Some(&rerank), &device), "deterministic");
    let one = Rerank::new(&drawer, &captioner, 1, Scored::SecondPart).unwrap();
    assert_eq!(drawer.generate_from(&whole, 5, 5, opts, Some(&one), &device), plain, "one candidate: as drawn");

    // captioning, scored by the caption-first prior over whole pairs: the image is kept
    let encoder = captioner.encoder(bundle::load_encoder(&stage1, &device).unwrap()).unwrap();
    let given = captioner.given_image(&encoder, &pairs[0].image, &device).unwrap();
    let rerank = Rerank::new(&captioner, &drawer, 8, Scored::WholePair).unwrap();
    let captioned = captioner.generate_from(&given, 2, 1, opts, Some(&rerank), &device);
    for pair in &captioned {
        assert_eq!(pair.image, pairs[0].image);
        assert_eq!(captioner.config.to_prior_order(&pair.codes)[..given.prefix.len()], given.prefix[..]);
    }

    // the choice: each group of candidates keeps its highest score, ties to the first drawn
    let rerank = Rerank::new(&drawer, &captioner, 3, Scored::SecondPart).unwrap();
    let candidates: Vec<Vec<u32>> = (1..=6).map(|c| vec![c]).collect();
    assert_eq!(rerank.choose(candidates, &[0.1, 0.5, 0.2, -1.0, -1.0, -3.0]), vec![vec![2], vec![4]]);
    let candidates: Vec<Vec<u32>> = (1..=3).map(|c| vec![c]).collect();
    assert_eq!(rerank.choose(candidates, &[f32::NAN, -5.0, -7.0]), vec![vec![2]], "a NaN score ranks lowest");

    let refused = |result: Result<Rerank, mxq::Error>| error(result.map(|_| ()));
    for k in [0, 65] {
        let says = refused(Rerank::new(&drawer, &captioner, k, Scored::SecondPart));
        assert!(says.contains(&format!("candidates {k} must be between 1 and 64")), "{says}");
    }
    let (other, _, _) = bundle_and_stage1(SequenceOrder::ImageFirst, 4);
    let says = refused(Rerank::new(&drawer, &other, 4, Scored::SecondPart));
    assert!(says.contains("not on this bundle's stage 1"), "{says}");
    let mut conditional = captioner;
    conditional.config.prior.conditional = true;
    let says = refused(Rerank::new(&drawer, &conditional, 4, Scored::WholePair));
    assert!(says.contains("conditional") && says.contains("not whole pairs"), "{says}");
}
