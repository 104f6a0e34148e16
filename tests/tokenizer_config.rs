//! The tokenizer round-trips captions at a fixed length; configs round-trip and reject typos.

mod common;

use mxq::MxqConfig;
use mxq::data::tokenizer::{CaptionTokenizer, MASK_ID, PAD_ID};

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
        assert_eq!(cfg.stage1.sequence_length(), 72);
    }
    let typo = MxqConfig::demo().to_json().replace("\"commitment\"", "\"comitment\"");
    assert!(MxqConfig::from_json(&typo).unwrap_err().to_string().contains("comitment"));
    let mut bad = MxqConfig::demo();
    bad.stage1.text.kernel = 4;
    assert!(bad.check().unwrap_err().to_string().contains("odd kernel"));
    let mut bad = MxqConfig::demo();
    bad.stage1.text.positions = 65;
    assert!(bad.check().unwrap_err().to_string().contains("65 text positions for 64 tokens"));
    for rank in [0, 513] {
        let mut bad = MxqConfig::demo();
        bad.stage1.text.map_rank = Some(rank);
        assert!(bad.check().unwrap_err().to_string().contains("takes a rank from 1 to 512"), "rank {rank}");
    }
    // a rank is a decoder-only choice: the codes are the same, and the JSON of a dense map
    // has no such key (configs written before it parse as they did)
    let mut low = MxqConfig::demo();
    low.stage1.text.map_rank = Some(64);
    assert_eq!(MxqConfig::from_json(&low.to_json()).unwrap(), low);
    assert!(low.stage1.same_codes(&MxqConfig::demo().stage1) && low.stage1 != MxqConfig::demo().stage1);
    assert!(!MxqConfig::demo().to_json().contains("map_rank"));
    low.stage1.text.embed = 32;
    assert!(!low.stage1.same_codes(&MxqConfig::demo().stage1));
    let mut bad = MxqConfig::demo();
    bad.prior.heads = 0;
    assert!(bad.check().unwrap_err().to_string().contains("prior.heads is 0"));
    assert!(MxqConfig::preset("huge").is_err());
}

#[test]
fn variants_change_only_what_they_name() {
    use mxq::config::{CodeGroup, Quantizer};
    let base = MxqConfig::demo();
    assert_eq!(base.clone().variant("mxq").unwrap(), base);
    let v = base.clone().variant("no-masking").unwrap().stage1;
    assert_eq!((v.masking.image_ratio, v.masking.text_ratio), (0.0, 0.0));
    assert_eq!(v.quantizer, base.stage1.quantizer);
    let v = base.clone().variant("no-joint").unwrap().stage1;
    assert_eq!((v.masking.image_ratio, v.joint(), v.cross_maps()), (0.3, None, base.stage1.cross_maps()));
    let v = base.clone().variant("separate").unwrap();
    v.check().unwrap();
    assert_eq!(v.stage1.quantizer, Quantizer::Separate);
    assert_eq!((v.stage1.joint(), v.stage1.cross_maps(), v.stage1.masking.image_ratio), (None, None, 0.0));
    assert_eq!(v.stage1.codebook_entries(), 512);
    assert_eq!(
        v.stage1.code_groups(),
        vec![CodeGroup { positions: 0..64, entries: 0..256 }, CodeGroup { positions: 64..72, entries: 256..512 }]
    );
    assert_eq!(base.stage1.codebook_entries(), 256);
    assert!(base.variant("no-codebook").unwrap_err().to_string().contains("unknown variant 'no-codebook'"));
}

/// The flat layout of format-2 bundles and older checkpoints reads as the same model, each
/// of its variants included; a typo in it is named too.
#[test]
fn flat_configs_of_the_earlier_layout_read_as_the_same_model() {
    let flat = |separate: bool, joint: bool| {
        format!(
            r#"{{"preset": "demo", "stage1": {{"down_channels": [32, 64, 128], "hidden": 128, "res_blocks": 2,
            "res_hidden": 64, "token_length": 64, "vocab_size": 64, "text_embed": 64, "text_layers": 4,
            "text_kernel": 5, "text_positions": 8, "joint_layers": 2, "joint_heads": 2, "joint_ff": 256,
            "dropout": 0.0, "codebook_size": 256, "code_dim": 64, "commitment": 0.25, "text_cross_hidden": 32,
            "image_mask_ratio": {m}, "text_mask_ratio": {m}, "mask_patch": 8, "joint": {joint},
            "separate_codebooks": {separate}}}, "prior": {{"layers": 4, "heads": 4, "d_model": 256, "dropout": 0.0}}}}"#,
            m = if separate { 0.0 } else { 0.3 }
        )
    };
    let demo = MxqConfig::demo();
    assert_eq!(MxqConfig::from_json(&flat(false, true)).unwrap(), demo);
    assert_eq!(MxqConfig::from_json(&flat(false, false)).unwrap(), demo.clone().variant("no-joint").unwrap());
    assert_eq!(MxqConfig::from_json(&flat(true, false)).unwrap(), demo.variant("separate").unwrap());
    // configs written before the comparison's keys existed
    let old = flat(false, true).replace(
        r#", "joint": true,
            "separate_codebooks": false"#,
        "",
    );
    assert!(!old.contains("separate_codebooks"), "{old}");
    assert_eq!(MxqConfig::from_json(&old).unwrap(), MxqConfig::demo());
    let typo = flat(false, true).replace("\"hidden\"", "\"hiden\"");
    assert!(MxqConfig::from_json(&typo).unwrap_err().to_string().contains("hiden"));
}
