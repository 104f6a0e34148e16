//! Benchmark of the page (figures, not a test): payload sizes, bundle → first pair, and
//! pairs/s for batches of 1 and 16 on the page's CPU path and on WebGPU (SwiftShader in a
//! headless Chromium here), beside the native CPU for the same batches. Prints JSON lines.
//!
//! `trunk build --release` first (scripts/bench-page does both). Arguments `cpu` (the CPU build
//! the page picks: with relaxed SIMD where the browser has it), `cpu-plain` (the plain CPU
//! build, `simd=plain`) or `webgpu` measure only those paths of the page.

#[path = "../tests/harness/mod.rs"]
mod harness;

use std::io::Write;
use std::time::{Duration, Instant};

use harness::{browser, eval, open, wait_for};
use mxq::bundle::LoadOptions;
use mxq::sample::SampleOptions;
use serde_json::json;

fn gzip_len(bytes: &[u8]) -> usize {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap().len()
}

const RUNS: &[(usize, usize)] = &[(1, 8), (16, 16)]; // (batch, pairs)

fn main() {
    // the page's backends to measure: arguments `cpu`, `webgpu` (both without arguments);
    // `--bundle-delay-ms N`: the server answers the bundle only after N ms, as a slow network
    // would deliver it (the CPU path warms up meanwhile)
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let delay_ms: u64 = match args.iter().position(|a| a == "--bundle-delay-ms") {
        Some(i) => {
            let n = args.get(i + 1).and_then(|n| n.parse().ok()).unwrap_or_else(|| {
                eprintln!("page_bench: --bundle-delay-ms takes a number of milliseconds");
                std::process::exit(2)
            });
            args.drain(i..i + 2);
            n
        }
        None => 0,
    };
    let only = args;
    if let Some(other) = only.iter().find(|o| !["cpu", "cpu-plain", "webgpu"].contains(&o.as_str())) {
        eprintln!("page_bench: unknown backend {other:?} (cpu, cpu-plain, webgpu)");
        std::process::exit(2);
    }
    let dist = harness::dist();
    // what the CPU path fetches before its first pair: one of the two CPU builds (with relaxed
    // SIMD where the browser validates it); the WebGPU path fetches the WebGPU build in their
    // place; the conditional modes fetch their files when used
    let shared = ["worker.js", "page.js", "index.html", "style.css", "assets/demo.mxq.safetensors"];
    let cpu_build = ["mxq-web_bg.wasm", "mxq-web.js"];
    let fma_build = ["mxq-web-fma_bg.wasm", "mxq-web-fma.js"];
    let gpu_build = ["mxq-web-gpu_bg.wasm", "mxq-web-gpu.js"];
    let modes = ["assets/stage1/demo-encoder.mxq.safetensors", "assets/captioner.mxq.safetensors"];
    let sum = |files: &[&str]| {
        let mut total = (0, 0);
        for file in files {
            let bytes =
                std::fs::read(dist.join(file)).unwrap_or_else(|e| panic!("{file}: {e} (trunk build --release first)"));
            let (raw, gz) = (bytes.len(), gzip_len(&bytes));
            println!("{}", json!({ "payload": file, "bytes": raw, "gzip_bytes": gz }));
            total = (total.0 + raw, total.1 + gz);
        }
        total
    };
    let (shared, cpu_build, fma_build, gpu_build, modes) =
        (sum(&shared), sum(&cpu_build), sum(&fma_build), sum(&gpu_build), sum(&modes));
    let add = |parts: &[(usize, usize)]| parts.iter().fold((0, 0), |t, p| (t.0 + p.0, t.1 + p.1));
    for (what, (raw, gz)) in [
        ("before the first pair, CPU path (relaxed SIMD)", add(&[shared, fma_build])),
        ("before the first pair, CPU path (plain SIMD)", add(&[shared, cpu_build])),
        ("before the first pair, WebGPU path", add(&[shared, gpu_build])),
        (
            "everything: the three builds and the conditional modes' files",
            add(&[shared, cpu_build, fma_build, gpu_build, modes]),
        ),
    ] {
        println!("{}", json!({ "payload": what, "bytes": raw, "gzip_bytes": gz }));
    }

    // native, same bundle, same batches (flex CPU backend with rayon on this machine's cores)
    let device = mxq::cpu();
    let bundle = mxq::bundle::load(
        &std::fs::read(harness::root().join("assets/demo.mxq.safetensors")).unwrap(),
        &device,
        LoadOptions::default(),
    )
    .unwrap();
    // the page's defaults (the bundle's temperature and guidance), seed 1 as on the page
    let opts = SampleOptions { seed: 1, ..bundle.default_options() };
    bundle.generate(2, 2, opts, &device); // warm-up
    for &(batch, count) in RUNS {
        let start = Instant::now();
        bundle.generate(count, batch, opts, &device);
        let s = start.elapsed().as_secs_f64();
        println!(
            "{}",
            json!({ "backend": "native CPU", "batch": batch, "pairs": count, "seconds": s, "pairs_per_s": count as f64 / s })
        );
    }

    let delay = (delay_ms > 0).then(|| ("assets/demo.mxq.safetensors", Duration::from_millis(delay_ms)));
    let base = harness::serve_delayed(vec![], delay).0;
    for (name, webgpu, extra) in [("cpu", false, ""), ("cpu-plain", false, "&simd=plain"), ("webgpu", true, "")] {
        if !only.is_empty() && !only.iter().any(|o| o == name) {
            continue;
        }
        let browser = browser(webgpu);
        // load + the first pair (batch 1) straight after the bundle arrives
        let backend = if webgpu { "webgpu" } else { "cpu" };
        let first_pair = format!("{base}/index.html?backend={backend}&count=1&batch=1&seed=1&autorun=1{extra}");
        let tab = open(&browser, &first_pair);
        wait_for(&tab, "document.body.dataset.state", &["done"], Duration::from_secs(300));
        let label = eval(&tab, "document.getElementById('backend').textContent");
        // the CPU build's SIMD beside the label: 'relaxed' or 'plain'
        let label = match eval(&tab, "document.body.dataset.simd || ''").as_str() {
            Some(simd) if !simd.is_empty() => json!(format!("{} [{simd} SIMD]", label.as_str().unwrap_or(""))),
            _ => label,
        };
        let since = eval(&tab, "Number(document.body.dataset.sinceBundleMs)");
        // of which the bundle's load (parse, checks, dequantize, the model built on the device)
        let load = eval(&tab, "Number(document.body.dataset.loadMs)");
        // and from the page's opening; the warm-up steps run while the bundle downloaded
        let open_ms = eval(&tab, "Number(document.body.dataset.firstPairAtMs)");
        let warm = eval(&tab, "Number(document.body.dataset.warmUpSteps)");
        let warm_ms = eval(&tab, "Number(document.body.dataset.warmUpMs)");
        println!(
            "{}",
            json!({ "backend": label, "bundle_to_first_pair_ms": since, "load_ms": load, "open_to_first_pair_ms": open_ms,
                    "warm_up_steps": warm, "warm_up_ms": warm_ms, "bundle_delay_ms": delay_ms })
        );
        for &(batch, count) in RUNS {
            eval(
                &tab,
                &format!(
                    "(() => {{ const f = document.getElementById('controls'); f.elements.count.value = {count}; f.elements.batch.value = {batch}; document.getElementById('generate').click(); return 1; }})()"
                ),
            );
            wait_for(&tab, "document.body.dataset.state", &["generating"], Duration::from_secs(10));
            wait_for(&tab, "document.body.dataset.state", &["done"], Duration::from_secs(600));
            let ms = eval(&tab, "Number(document.body.dataset.ms)").as_f64().unwrap();
            println!(
                "{}",
                json!({ "backend": label, "batch": batch, "pairs": count, "seconds": ms / 1e3, "pairs_per_s": count as f64 / (ms / 1e3) })
            );
        }
        if webgpu {
            continue; // a caption on SwiftShader takes minutes: the CPU path's figures only
        }
        // "caption this" on the first card, three times: the first fetches and loads the
        // encoder file and the captioner (not counted: the page's figure is the caption alone)
        for run in 0..3 {
            let first = "document.querySelector('.card')";
            eval(
                &tab,
                &format!(
                    "(() => {{ delete {first}.dataset.captioned; {first}.querySelector('button.caption-this').click(); return 1; }})()"
                ),
            );
            let captioned = format!("({first}.dataset.captioned ? 'captioned' : document.body.dataset.state)");
            wait_for(&tab, &captioned, &["captioned"], Duration::from_secs(300));
            let timing = eval(&tab, "document.getElementById('timing').textContent");
            let ms: Option<f64> =
                timing.as_str().and_then(|t| t.split("captioned in ").nth(1)?.split(' ').next()?.parse().ok());
            println!("{}", json!({ "backend": label, "caption_run": run, "caption_ms": ms }));
        }
        // later visits in the same profile: the bundle comes from the HTTP cache at once, so no
        // warm-up runs, and the wasm engine may reuse the optimised code it cached for the wasm
        for visit in 2..=3 {
            let tab = open(&browser, &first_pair);
            wait_for(&tab, "document.body.dataset.state", &["done"], Duration::from_secs(300));
            let since = eval(&tab, "Number(document.body.dataset.sinceBundleMs)");
            let load = eval(&tab, "Number(document.body.dataset.loadMs)");
            let warm = eval(&tab, "Number(document.body.dataset.warmUpSteps)");
            println!(
                "{}",
                json!({ "backend": label, "visit": visit, "bundle_to_first_pair_ms": since, "load_ms": load, "warm_up_steps": warm })
            );
        }
    }
}
