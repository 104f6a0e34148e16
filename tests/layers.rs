//! The core's layers (see `src/lib.rs`): each folder imports only the layers below it
//! (`eval` and `train` never each other), and the library reads no environment variables.

use std::path::{Path, PathBuf};

/// Rank of a layer; modules of the crate root (`lib.rs`) count as the base.
fn rank(layer: &str) -> Option<usize> {
    Some(match layer {
        "config" | "device" | "error" | "rng" | "weights" | "Error" | "MxqConfig" | "cpu" | "on_cpu_pool" => 0,
        "data" => 1,
        "model" => 2,
        "kernels" => 3,
        "bundle" => 4,
        "sample" => 5,
        "eval" | "train" => 6,
        _ => return None,
    })
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The layer a source file belongs to: its folder under `src/`, or its own name at the top.
fn layer_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
    first.trim_end_matches(".rs").to_string()
}

/// Every `crate::NAME` in code (not in comments) of `text`.
fn crate_paths(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .flat_map(|l| l.match_indices("crate::").map(move |(i, _)| &l[i + 7..]))
        .map(|rest| rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect())
        .collect()
}

#[test]
fn layers_import_only_the_layers_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut wrong = Vec::new();
    for file in &files {
        let layer = layer_of(&src, file);
        if layer == "lib" {
            continue;
        }
        let own = rank(&layer).unwrap_or_else(|| panic!("{}: a folder the layer list does not name", file.display()));
        let text = std::fs::read_to_string(file).unwrap();
        for used in crate_paths(&text) {
            let Some(theirs) = rank(&used) else { panic!("{}: crate::{used} is in no layer", file.display()) };
            let allowed = theirs < own || used == layer || (own == 0 && theirs == 0);
            if !allowed {
                wrong.push(format!("{} ({layer}) imports crate::{used}", file.display()));
            }
        }
        assert!(!text.contains("env::var"), "{}: the library reads an environment variable", file.display());
    }
    assert!(wrong.is_empty(), "imports from a layer at or above their own:\n{}", wrong.join("\n"));
}

#[test]
fn the_layer_check_sees_a_wrong_import() {
    // the check itself can fail: an import upward is found in code, not in a comment
    let code = "use crate::train::Run; // crate::eval in a comment\n/// [`crate::sample`]\nlet x = crate::model::prior::Prior::new;";
    assert_eq!(crate_paths(code), ["train", "model"]);
}
