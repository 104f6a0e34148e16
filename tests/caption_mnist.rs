//! Caption MNIST: determinism, the exact grammar, the splits, and the image matching the caption.

mod common;

use std::collections::BTreeSet;

use mxq::data::caption_mnist::{CaptionMnist, Split, TRAIN_DIGITS};
use mxq::data::grammar::{Colour, ParseError, Region, SIDE, parse_caption};
use mxq::data::idx::read_idx;

#[test]
fn vendored_mnist_loads_and_bad_files_are_named_errors() {
    let d = common::digits();
    assert_eq!((d.len(), d.rows, d.cols), (10_000, 28, 28));
    let dir = tempfile::tempdir().unwrap();
    let raw = std::fs::read(common::mnist_dir().join("mnist-10k-images-idx3-ubyte.gz")).unwrap();
    let cut = dir.path().join("cut-images-idx3-ubyte.gz");
    std::fs::write(&cut, &raw[..raw.len() / 2]).unwrap();
    let err = read_idx(&cut, 0x0803).unwrap_err().to_string();
    assert!(err.contains("cut-images") && err.contains("gzip"), "{err}");
    let err = read_idx(&dir.path().join("missing"), 0x0803).unwrap_err().to_string();
    assert!(err.contains("missing"), "{err}");
}

#[test]
fn same_seed_same_pairs_other_seed_other_pairs() {
    let d = common::digits();
    let a = CaptionMnist::split(&d, Split::Train, None).unwrap();
    let b = CaptionMnist::split(&d, Split::Train, None).unwrap();
    let c = CaptionMnist::split(&d, Split::Train, Some(7)).unwrap();
    for i in 0..50 {
        assert_eq!(a.pair(i), b.pair(i));
    }
    assert!((0..50).any(|i| a.pair(i) != c.pair(i)));
    // pinned: the first caption of the test split never changes across platforms or builds
    let test = CaptionMnist::split(&d, Split::Test, None).unwrap();
    assert_eq!(
        test.pair(0).caption,
        "a red 1 on the lower left, the upper left has a blue 4, a red 4 on the upper right, a blue 3 on the lower right."
    );
}

#[test]
fn splits_use_disjoint_digits() {
    let d = common::digits();
    let train = CaptionMnist::split(&d, Split::Train, None).unwrap();
    let test = CaptionMnist::split(&d, Split::Test, None).unwrap();
    assert_eq!(train.digits().len(), TRAIN_DIGITS);
    assert_eq!(test.digits().len(), d.len() - TRAIN_DIGITS);
    assert_eq!(train.digits().glyph(0), d.glyph(0));
    assert_eq!(test.digits().glyph(0), d.glyph(TRAIN_DIGITS));
    let small = d.subset(0..TRAIN_DIGITS);
    assert!(CaptionMnist::split(&small, Split::Test, None).is_err());
}

#[test]
fn every_template_and_region_appears_and_parses_back_to_the_truth() {
    let g = CaptionMnist::split(&common::digits(), Split::Test, None).unwrap();
    let (mut forms, mut regions, mut counts) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    let mut centre = 0;
    for i in 0..2000 {
        let p = g.pair(i);
        let units = parse_caption(&p.caption).unwrap_or_else(|e| panic!("{}: {e}", p.caption));
        assert_eq!(units, p.units, "{}", p.caption);
        assert!(p.caption.is_ascii() && p.caption == p.caption.to_lowercase());
        counts.insert(units.len());
        centre += usize::from(units[0].region == Region::Center);
        for (unit, phrase) in units.iter().zip(p.caption.trim_end_matches('.').split(", ")) {
            regions.insert(unit.region);
            let form = (0..3).find(|&f| unit.phrase(f) == phrase).expect("phrase is one of the three forms");
            forms.insert(form);
            // the region holds lit pixels of exactly the caption's colour
            let (ox, oy) = unit.region.origin();
            let rgb = unit.colour.rgb();
            let mut lit = 0;
            for y in oy..oy + 32 {
                for x in ox..ox + 32 {
                    let px = &p.image[(y * SIDE + x) * 3..(y * SIDE + x) * 3 + 3];
                    if px.iter().any(|&v| v > 0) {
                        lit += 1;
                        for ch in 0..3 {
                            assert_eq!(px[ch] == 0, rgb[ch] == 0, "colour of {phrase}");
                        }
                    }
                }
            }
            assert!(lit > 20, "{phrase}: digit is drawn");
        }
    }
    assert_eq!(forms.len(), 3);
    assert_eq!(regions.len(), 5);
    assert_eq!(counts, [1, 2, 3, 4].into());
    assert!((300..500).contains(&centre), "centre layouts ≈ 1/5: {centre}");
}

#[test]
fn parser_accepts_each_form_and_rejects_malformed_captions() {
    let ok = parse_caption("a white 5 in the center.").unwrap();
    assert_eq!(ok[0].colour, Colour::White);
    assert_eq!(ok[0].digit, 5);
    assert!(parse_caption("the lower right has a blue 7, green digit 0 at the upper left.").is_ok());
    let bad = [
        ("a red 3 on the upper left", ParseError::NoFinalStop),
        ("a red 3 on the center.", ParseError::BadUnit("a red 3 on the center".into())),
        ("a red 3 in the upper left.", ParseError::BadUnit("a red 3 in the upper left".into())),
        ("a pink 3 on the upper left.", ParseError::BadUnit("a pink 3 on the upper left".into())),
        ("a red 12 on the upper left.", ParseError::BadUnit("a red 12 on the upper left".into())),
        ("a red 3 on the upper left, a red 4 on the upper left.", ParseError::RepeatedRegion("upper left")),
        ("a red 3 in the center, a red 4 on the upper left.", ParseError::CenterWithQuadrant),
        (
            "a red 1 on the upper left, a red 2 on the upper right, a red 3 on the lower left, a red 4 on the lower right, a red 5 on the upper left.",
            ParseError::TooManyUnits(5),
        ),
        (
            "a red 3 on the upper left,a red 4 on the lower left.",
            ParseError::BadUnit("a red 3 on the upper left,a red 4 on the lower left".into()),
        ),
    ];
    for (caption, want) in bad {
        assert_eq!(parse_caption(caption), Err(want), "{caption}");
    }
}

#[test]
fn rule_judge_reads_regions_and_colours_of_real_pairs() {
    let g = CaptionMnist::split(&common::digits(), Split::Test, None).unwrap();
    let n = 1000;
    let agree = (0..n)
        .filter(|&i| {
            let p = g.pair(i);
            let mut truth: Vec<_> = p.units.iter().map(|u| (u.region, u.colour)).collect();
            truth.sort();
            let mut read = mxq::eval::judge::read_layout(&p.image);
            read.sort();
            truth == read
        })
        .count();
    assert!(agree as f64 >= 0.99 * n as f64, "layout and colours read right on {agree}/{n} real pairs");
    assert!(mxq::eval::judge::read_layout(&vec![0u8; SIDE * SIDE * 3]).is_empty());
}

#[test]
fn digit_counts_follow_the_layout_rule() {
    use mxq::data::caption_mnist::DIGIT_COUNT_SHARES;
    let g = CaptionMnist::split(&common::digits(), Split::Train, None).unwrap();
    let n = 5000;
    let mut counts = [0usize; 5];
    (0..n).for_each(|i| counts[g.pair(i).units.len()] += 1);
    for (k, (&c, share)) in counts.iter().zip(DIGIT_COUNT_SHARES).enumerate() {
        // one binomial standard error at n = 5000 is at most 0.7 points
        assert!((c as f64 / n as f64 - share).abs() < 0.025, "{k} digits: {c} of {n}, spec {share}");
    }
}
