//! Training both stages: the options ([`options`]), the shared loop ([`fit`]) with its
//! metrics and checkpoints, one file per stage's step ([`stage1`], [`prior`], and [`decoders`]: stage 1's decoder half fine-tuned on frozen codes), and the run
//! folder that holds them ([`run`]). Imports the layers below it; nothing imports it but
//! the CLI.

pub mod checkpoint;
pub mod decoders;
pub mod fit;
pub mod metrics;
pub mod options;
pub mod prior;
pub mod run;
pub mod stage1;

pub use checkpoint::{Checkpoint, TrainState};
pub use decoders::{DecoderStep, train_decoders};
pub use fit::{Progress, Stage, check_resume};
pub use metrics::{EpochMetrics, StepReport};
pub use options::{Schedule, TrainOptions};
pub use prior::{
    CodeSequences, PriorStep, encode_alone, encode_for_prior, encode_sequences, encode_sequences_kept, train_prior,
};
pub use run::{ConfigSource, PriorSetup, Run, Stage1Setup};
pub use stage1::{Stage1Step, train_stage1};
