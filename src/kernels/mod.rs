//! CPU kernels for the prior's sampling steps: its linear layers packed (int8 stays int8),
//! single-position attention over a plain key/value cache, GELU, and the prior run on them.
//! Written by hand because burn's CPU backend has no int8 matmul and runs a step's tiny ops
//! as general ones: a `[16, 512] · [512, 2048]` matmul through a GEMM with AVX2 kernels, the
//! attention as 128 separate `[1, 64] · [64, t]` GEMMs, a cache that is re-concatenated
//! every step, and `erf` one scalar at a time. Measured on the paper preset, those made up
//! most of a 16-pair sample.
//!
//! Every kernel has an AVX-512 version (x86-64, detected at run time) and a plain loop that
//! runs the same packed data anywhere ([`Simd`]); the tests compare both with references.
//! Also here: the block int8 format ([`int8`]) that the bundle stores and the packed layers
//! read, since both use it. Imports only the base modules and `model`.

pub mod activations;
pub mod attention;
pub mod int8;
pub mod packed_linear;
pub mod packed_prior;

/// Which loops a kernel runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Simd {
    /// AVX-512F; runs as [`Simd::Plain`] on a CPU without it (checked at each call).
    Avx512,
    /// Portable loops, on every CPU.
    Plain,
}

impl Simd {
    /// The fastest this CPU runs.
    pub fn best() -> Self {
        if avx512_available() { Self::Avx512 } else { Self::Plain }
    }

    /// Whether this choice runs AVX-512 code here.
    pub(crate) fn avx512(self) -> bool {
        self == Self::Avx512 && avx512_available()
    }
}

/// Whether this CPU has AVX-512F (x86-64, detected at run time).
pub fn avx512_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::Simd;

    /// The kernels a test runs: the plain loops, and AVX-512 where the CPU has it (where it
    /// does not, the test says so on stderr, past the test harness's capture: its AVX-512
    /// half was skipped).
    pub fn both() -> impl Iterator<Item = Simd> {
        if !super::avx512_available() {
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "skipped: this CPU has no AVX-512, so only the plain kernels ran");
        }
        [Simd::Plain].into_iter().chain(super::avx512_available().then_some(Simd::Avx512))
    }
}
