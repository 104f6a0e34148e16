//! The shipped judge: it reads real test pairs as their generator wrote them, and a damaged
//! judge file is a named error.

mod common;

use mxq::data::caption_mnist::{CaptionMnist, Split, TRAIN_DIGITS};
use mxq::eval::judge::Judge;

fn shipped() -> Vec<u8> {
    std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/judge.safetensors"))
        .expect("assets/judge.safetensors ships with the repository")
}

#[test]
fn judge_reads_real_test_pairs_like_their_ground_truth() {
    let device = mxq::cpu();
    let judge = Judge::from_bytes(shipped(), &device).unwrap();
    let digits = common::digits();
    let test = digits.subset(TRAIN_DIGITS..digits.len());
    let accuracy = mxq::eval::digit_classifier::accuracy(&judge.classifier, &test, &device);
    assert!(accuracy >= 0.985, "shipped judge reads {accuracy:.4} of the held-out test digits (spec: 98.5%)");
    assert!((accuracy - judge.test_accuracy).abs() < 1e-9, "the file records what it measures");
    let g = CaptionMnist::split(&digits, Split::Test, None).unwrap();
    let pairs: Vec<_> = (0..300).map(|i| g.pair(i)).collect();
    let images: Vec<&[u8]> = pairs.iter().map(|p| p.image.as_slice()).collect();
    let (readings, features) = judge.read(&images);
    let (mut units, mut right, mut whole) = (0, 0, 0);
    for (pair, read) in pairs.iter().zip(&readings) {
        let mut truth = pair.units.clone();
        truth.sort();
        let mut seen: Vec<_> = read.iter().map(|r| r.unit).collect();
        seen.sort();
        units += truth.len();
        right += truth.iter().filter(|u| seen.contains(u)).count();
        whole += usize::from(truth == seen);
    }
    assert_eq!(features.len(), readings.iter().map(Vec::len).sum::<usize>(), "one feature row per lit region");
    let unit_accuracy = right as f64 / units as f64;
    // units also need the presence and colour rules right; 98.9% on 1,000 pairs
    assert!(unit_accuracy >= 0.97, "judge matches {unit_accuracy:.4} of real units");
    assert!(whole as f64 / 300.0 >= 0.95, "judge matches {whole}/300 real pairs exactly");
}

#[test]
fn scores_break_down_by_digit_count_with_its_distance_to_the_data() {
    use mxq::data::caption_mnist::DIGIT_COUNT_SHARES;
    let judge = Judge::from_bytes(shipped(), &mxq::cpu()).unwrap();
    let g = CaptionMnist::split(&common::digits(), Split::Test, None).unwrap();
    let pairs: Vec<_> = (0..400).map(|i| g.pair(i)).collect();
    let all: Vec<(&[u8], &str)> = pairs.iter().map(|p| (p.image.as_slice(), p.caption.as_str())).collect();
    let scores = judge.score(&all);
    let shares: Vec<f64> = scores.by_digit_count.iter().map(|c| c.share_pct).collect();
    assert_eq!(scores.by_digit_count.iter().map(|c| c.digits).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
    assert!((shares.iter().sum::<f64>() - 100.0).abs() < 1e-9, "{shares:?}");
    let truth = |k: usize| 100.0 * pairs.iter().filter(|p| p.units.len() == k).count() as f64 / 400.0;
    for c in &scores.by_digit_count {
        // the judge counts lit regions, which real pairs have exactly as many as units
        assert!((c.share_pct - truth(c.digits)).abs() <= 0.5, "{c:?} vs {}", truth(c.digits));
        assert!(c.digits == 0 || c.consistency_pct >= 85.0, "{c:?}");
    }
    assert!(scores.digit_count_total_variation < 0.08, "{}", scores.digit_count_total_variation);
    // only one-digit pairs: 0.5 · (|1 − 0.4| + 3 · 0.2) = 0.6 from the data's mix
    let single: Vec<(&[u8], &str)> =
        pairs.iter().filter(|p| p.units.len() == 1).map(|p| (p.image.as_slice(), p.caption.as_str())).collect();
    let one = judge.score(&single);
    assert!((one.by_digit_count[1].share_pct - 100.0).abs() < 1e-9, "{:?}", one.by_digit_count);
    assert!((one.digit_count_total_variation - 0.6).abs() < 1e-9);
    assert!((DIGIT_COUNT_SHARES.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    // copied captions: the share found in the training set's
    assert_eq!(scores.copied_captions_pct, None);
    let train: std::collections::HashSet<String> = pairs[..100].iter().map(|p| p.caption.clone()).collect();
    let captions: Vec<&str> = all.iter().map(|p| p.1).collect();
    let copied = scores.clone().with_copied(&captions[..100], &train).copied_captions_pct;
    assert_eq!(copied, Some(100.0));
    let none = std::collections::HashSet::from(["a white 1 on the moon.".to_string()]);
    assert_eq!(scores.with_copied(&captions, &none).copied_captions_pct, Some(0.0));
}

#[test]
fn damaged_judge_files_are_named_errors() {
    let device = mxq::cpu();
    let good = shipped();
    let err = |bytes: Vec<u8>| Judge::from_bytes(bytes, &device).err().expect("rejected").to_string();
    assert!(err(good[..good.len() / 2].to_vec()).contains("judge"));
    assert!(err(b"not a judge".to_vec()).contains("truncated or corrupted"));
    let bundle =
        std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo.mxq.safetensors")).unwrap();
    assert!(err(bundle).contains("format is not mxq-judge"));
    // a judge file from another classifier layout (an extra tensor) is refused, not half-loaded
    let file = safetensors::SafeTensors::deserialize(&good).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&good).unwrap();
    let extra = [0u8; 16];
    let mut views: Vec<(String, safetensors::tensor::TensorView)> = file.tensors();
    views.push((
        "extra.weight".into(),
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![4], &extra).unwrap(),
    ));
    let grown = safetensors::serialize(views, meta.metadata().clone()).unwrap();
    assert!(err(grown).contains("unused"));
}

#[test]
fn frechet_distance_is_zero_on_itself_and_the_squared_shift_between_shifted_sets() {
    use mxq::eval::frechet::frechet_distance;
    let mut rng = mxq::rng::Rng::new(3, mxq::rng::Stream::Test(0));
    let a: Vec<Vec<f32>> = (0..300).map(|_| (0..6).map(|_| rng.unit_f32() * 2.0 - 1.0).collect()).collect();
    assert!(frechet_distance(&a, &a).unwrap() < 1e-9);
    // same covariance, means 0.5 apart in each of 6 dimensions: 6 × 0.25
    let shifted: Vec<Vec<f32>> = a.iter().map(|r| r.iter().map(|v| v + 0.5).collect()).collect();
    assert!((frechet_distance(&a, &shifted).unwrap() - 1.5).abs() < 1e-4);
    // a wider spread is farther than a shifted copy of the same spread
    let wide: Vec<Vec<f32>> = a.iter().map(|r| r.iter().map(|v| v * 3.0).collect()).collect();
    assert!(frechet_distance(&a, &wide).unwrap() > 1.0);
    assert!(frechet_distance(&a[..1], &a).unwrap_err().to_string().contains("at least 2"));
}
