//! The packed linear kernel alone (`mxq::kernels::packed_linear`): GFLOP/s and weight bytes read
//! per second for the prior's layer shapes (paper preset), at 1 and 16 rows, int8 and f32
//! weights. Weights this size stay in the CPU's L3 between calls, so these are the kernel's
//! ceilings; `mxq bench` gives the end-to-end figures.
//! `cargo run --release --example sampling_kernels_bench [-- --plain]` (`--plain`: the portable
//! loop the page's wasm runs, here with the native build's SIMD)

use std::time::Instant;

use mxq::kernels::int8::quantize_blocks;
use mxq::kernels::packed_linear::PackedLinear;
use mxq::kernels::{Simd, avx512_available};

fn main() {
    println!("AVX-512 kernels: {}", avx512_available());
    let simd = if std::env::args().any(|a| a == "--plain") { Simd::Plain } else { Simd::best() };
    for (k, n) in [(512usize, 1536usize), (512, 512), (512, 2048), (2048, 512)] {
        let w: Vec<f32> = (0..k * n).map(|i| ((i * 7919 % 1000) as f32) / 1000.0 - 0.5).collect();
        let (q, scales) = quantize_blocks(&w);
        let layers = [
            ("int8", 1, PackedLinear::int8(&q, &scales, k, n, None).unwrap()),
            ("f32", 4, PackedLinear::f32(&w, k, n, None).unwrap()),
        ];
        for m in [1usize, 2, 16, 32] {
            let x = vec![0.1f32; m * k];
            for (name, bytes, layer) in &layers {
                for _ in 0..20 {
                    layer.forward(&x, m, simd);
                }
                let reps = 200;
                let start = Instant::now();
                for _ in 0..reps {
                    std::hint::black_box(layer.forward(&x, m, simd));
                }
                let s = start.elapsed().as_secs_f64() / reps as f64;
                println!(
                    "[{k}, {n}] rows {m:2} {name:4}: {:6.1} us  {:5.1} GFLOP/s  {:5.1} GB/s of weights",
                    s * 1e6,
                    2.0 * (m * k * n) as f64 / s / 1e9,
                    (k * n * bytes) as f64 / s / 1e9
                );
            }
        }
    }
}
