//! The tokenizer round-trips captions at a fixed length; configs round-trip and reject typos.

mod common;

use mxq::MxqConfig;
use mxq::tokenizer::{CaptionTokenizer, MASK_ID, PAD_ID};

#[test]
fn captions_round_trip_at_fixed_length() {
    let pairs = common::pairs(300);
    let tok = common::tokenizer(&pairs);
    assert!(tok.vocab_size() <= 128);
    for p in &pairs {
        let ids = tok.encode(&p.caption);
        assert_eq!(ids.len(), 64);
        assert!(!ids.contains(&MASK_ID));
        assert_eq!(tok.decode(&ids), p.caption);
    }
    let long = "a red 1 on the upper left, ".repeat(20);
    assert_eq!(tok.encode(&long).len(), 64, "long captions are truncated");
    assert_eq!(tok.encode("").iter().filter(|&&t| t == PAD_ID).count(), 64);
    let again = CaptionTokenizer::from_json(&tok.to_json()).unwrap();
    assert_eq!(again.encode(&pairs[0].caption), tok.encode(&pairs[0].caption));
    assert!(CaptionTokenizer::from_json("{not json").is_err());
}

#[test]
fn config_round_trips_and_rejects_unknown_keys_and_bad_sizes() {
    for cfg in [MxqConfig::paper(), MxqConfig::demo(), MxqConfig::tiny()] {
        assert_eq!(MxqConfig::from_json(&cfg.to_json()).unwrap(), cfg);
        assert_eq!(cfg.stage1.positions(), 72);
    }
    let typo = MxqConfig::demo().to_json().replace("\"codebook_size\"", "\"codebok_size\"");
    assert!(MxqConfig::from_json(&typo).unwrap_err().to_string().contains("codebok_size"));
    let mut bad = MxqConfig::demo();
    bad.stage1.text_kernel = 4;
    assert!(bad.check().unwrap_err().to_string().contains("odd kernel"));
    let mut bad = MxqConfig::demo();
    bad.stage1.text_positions = 65;
    assert!(bad.check().unwrap_err().to_string().contains("65 text positions for 64 tokens"));
    assert!(MxqConfig::preset("huge").is_err());
}

#[test]
fn variants_change_only_what_they_name() {
    let base = MxqConfig::demo();
    assert_eq!(base.clone().variant("mxq").unwrap(), base);
    let v = base.clone().variant("no-masking").unwrap().stage1;
    assert_eq!((v.image_mask_ratio, v.text_mask_ratio, v.joint, v.separate_codebooks), (0.0, 0.0, true, false));
    let v = base.clone().variant("no-joint").unwrap().stage1;
    assert_eq!((v.image_mask_ratio, v.joint, v.separate_codebooks), (0.3, false, false));
    let v = base.clone().variant("separate").unwrap();
    v.check().unwrap();
    assert_eq!((v.stage1.joint, v.stage1.image_mask_ratio, v.stage1.codes()), (false, 0.0, 512));
    assert_eq!(v.stage1.code_groups(), vec![(0..64, 0..256), (64..72, 256..512)]);
    assert_eq!(base.stage1.codes(), 256);
    // an older config without the new keys reads as the cross quantizer
    let old = base.to_json().replace(",\n    \"separate_codebooks\": false", "");
    assert!(!old.contains("separate_codebooks"));
    assert_eq!(MxqConfig::from_json(&old).unwrap(), base);
    let mut bad = v;
    bad.stage1.joint = true;
    assert!(bad.check().unwrap_err().to_string().contains("set joint to false"));
    assert!(base.variant("no-codebook").unwrap_err().to_string().contains("unknown variant 'no-codebook'"));
}
