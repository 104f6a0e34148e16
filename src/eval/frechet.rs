//! Fréchet distance between two sets of feature vectors (Heusel et al. 2017, "FID"), each
//! summarised by its mean and covariance:
//! `‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁^½ Σ₂ Σ₁^½)^½`.
//! mxq reads it in the judge's penultimate features of digit regions ([`crate::eval::judge`]).
//! The eigendecompositions are nalgebra's.

use nalgebra::{DMatrix, DVector, SymmetricEigen};

use crate::Error;

/// Mean and (unbiased) covariance of `rows`, each of the same length.
fn moments(rows: &[Vec<f32>]) -> Result<(DVector<f64>, DMatrix<f64>), Error> {
    let n = rows.len();
    let d = rows.first().map_or(0, Vec::len);
    if n < 2 || d == 0 || rows.iter().any(|r| r.len() != d) {
        return Err(Error::Judge(format!(
            "a Fréchet distance needs at least 2 feature vectors of one width (got {n})"
        )));
    }
    let x = DMatrix::from_fn(n, d, |i, j| rows[i][j] as f64);
    let mean = DVector::from_fn(d, |j, _| x.column(j).mean());
    let centred = DMatrix::from_fn(n, d, |i, j| x[(i, j)] - mean[j]);
    Ok((mean, centred.transpose() * &centred / (n - 1) as f64))
}

/// The square root of a symmetric positive semi-definite matrix (negative eigenvalues from
/// rounding are read as 0).
fn psd_sqrt(m: DMatrix<f64>) -> DMatrix<f64> {
    let eig = SymmetricEigen::new((&m + m.transpose()) / 2.0);
    let roots = DMatrix::from_diagonal(&eig.eigenvalues.map(|v| v.max(0.0).sqrt()));
    &eig.eigenvectors * roots * eig.eigenvectors.transpose()
}

/// The Fréchet distance between the Gaussians fitted to `a` and to `b`.
pub fn frechet_distance(a: &[Vec<f32>], b: &[Vec<f32>]) -> Result<f64, Error> {
    let (mu_a, cov_a) = moments(a)?;
    let (mu_b, cov_b) = moments(b)?;
    if mu_a.len() != mu_b.len() {
        return Err(Error::Judge(format!("features of width {} and {}", mu_a.len(), mu_b.len())));
    }
    let root_a = psd_sqrt(cov_a.clone());
    let cross = psd_sqrt(&root_a * &cov_b * &root_a);
    let distance = (mu_a - mu_b).norm_squared() + cov_a.trace() + cov_b.trace() - 2.0 * cross.trace();
    Ok(distance.max(0.0))
}
