//! Evaluation on Caption MNIST: the judge (region rules + [`digit_classifier`]), the
//! [`frechet`] distance in its features, stage-1 [`reconstruction`] figures, and the
//! [`protocol`] of `mxq eval`. Imports the layers below it, never training.

pub mod digit_classifier;
pub mod frechet;
pub mod judge;
pub mod protocol;
pub mod reconstruction;
