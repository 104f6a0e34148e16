//! The prior's training step: next-code cross-entropy over the code sequences of a frozen
//! stage 1, which [`encode_sequences`] makes.

use std::path::Path;

use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::prelude::*;

use crate::Error;
use crate::config::{MxqConfig, SequenceOrder};
use crate::data::batch::{Batch, PairSet};
use crate::data::masking::Half;
use crate::data::tokenizer::CaptionTokenizer;
use crate::model::mxq_vae::MxqVae;
use crate::model::prior::Prior;
use crate::rng::{Rng, Stream};
use crate::train::checkpoint::{Checkpoint, TrainState};
use crate::train::fit::{Progress, Stage, fit, init_model, start_state};
use crate::train::metrics::StepMetrics;
use crate::train::options::TrainOptions;

/// Code sequences of a set of pairs, back to back.
#[derive(Debug, Clone, PartialEq)]
pub struct CodeSequences {
    pub codes: Vec<u32>,
    /// Codes per sequence (72).
    pub length: usize,
}

impl CodeSequences {
    pub fn len(&self) -> usize {
        self.codes.len() / self.length.max(1)
    }
    pub fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }
    /// Sequence `i`.
    pub fn get(&self, i: usize) -> &[u32] {
        &self.codes[i * self.length..(i + 1) * self.length]
    }
    /// Sequences `ids`, back to back, as a tensor's values.
    pub fn rows(&self, ids: &[usize]) -> Vec<i64> {
        ids.iter().flat_map(|&i| self.get(i).iter().map(|&c| c as i64)).collect()
    }
    /// The same sequences (stage 1's order) in the order `config`'s prior models them.
    pub fn in_prior_order(&self, config: &MxqConfig) -> Self {
        let codes = self.codes.chunks(self.length.max(1)).flat_map(|s| config.to_prior_order(s)).collect();
        Self { codes, length: self.length }
    }
}

/// Encodes every pair into its unified code sequence with a frozen stage 1, `batch` pairs at a time.
pub fn encode_sequences(vae: &MxqVae, data: &PairSet, batch: usize, device: &Device) -> CodeSequences {
    encode_with(vae, data, batch, |ids| data.batch(ids, None, device))
}

/// The sequences `config`'s prior trains on: [`encode_sequences`]; for a conditional prior
/// (`prior.conditional`) the first part's codes are instead those of that half encoded alone,
/// the other half masked entirely — what the conditional modes give the prior — and the
/// second part's those of the whole pair, which decode to it.
pub fn encode_for_prior(
    vae: &MxqVae,
    data: &PairSet,
    batch: usize,
    device: &Device,
    config: &MxqConfig,
) -> CodeSequences {
    let mut whole = encode_sequences(vae, data, batch, device);
    if !config.prior.conditional {
        return whole;
    }
    let image = config.stage1.image_positions();
    let (without, given) = match config.prior.order {
        SequenceOrder::ImageFirst => (Half::Caption, 0..image),
        SequenceOrder::TextFirst => (Half::Image, image..whole.length),
    };
    let alone = encode_with(vae, data, batch, |ids| data.batch_without(ids, without, device));
    let length = whole.length;
    for (w, a) in whole.codes.chunks_mut(length).zip(alone.codes.chunks(length)) {
        w[given.clone()].copy_from_slice(&a[given.clone()]);
    }
    whole
}

/// Encodes every pair from `half` alone, the other half masked entirely: the codes the
/// conditional modes start from, at every position.
pub fn encode_alone(vae: &MxqVae, data: &PairSet, batch: usize, device: &Device, half: Half) -> CodeSequences {
    let without = match half {
        Half::Image => Half::Caption,
        Half::Caption => Half::Image,
    };
    encode_with(vae, data, batch, |ids| data.batch_without(ids, without, device))
}

fn encode_with(vae: &MxqVae, data: &PairSet, batch: usize, make: impl Fn(&[usize]) -> Batch + Sync) -> CodeSequences {
    let ids: Vec<usize> = (0..data.len()).collect();
    let codes: Vec<u32> = crate::on_cpu_pool(|| {
        ids.chunks(batch.max(1))
            .flat_map(|chunk| {
                vae.encode(make(chunk))
                    .into_data()
                    .try_into_vec_as::<i64>()
                    .expect("int codes")
                    .into_iter()
                    .map(|c| c as u32)
            })
            .collect()
    });
    let length = codes.len() / data.len().max(1);
    CodeSequences { codes, length }
}

/// [`encode_for_prior`], kept in `dir` for the next start of the same run: a resume, or a
/// new prior on the same stage 1 and pairs, reads the codes back instead of encoding again
/// (minutes on a CPU for 200,000 pairs). The file is named by a sha256 of the pairs (image
/// bytes, caption tokens) and of the stage-1 weights themselves (names, shapes, values: not
/// a checkpoint file's bytes, which hold burn's random parameter ids, so two imports of one
/// stage-1 file name the same codes and a codes file can be carried to another run), so
/// other pairs or another stage 1 never meet it. A file that does not fit (size, a code
/// outside the codebook) is encoded again and replaced. With `alone`, every code is instead
/// that of the pair with the other half masked entirely ([`encode_alone`]; another file).
/// Returns the sequences and whether they came from the file.
#[allow(clippy::too_many_arguments)]
pub fn encode_sequences_kept(
    vae: &MxqVae,
    data: &PairSet,
    batch: usize,
    device: &Device,
    dir: &Path,
    config: &MxqConfig,
    alone: Option<Half>,
) -> Result<(CodeSequences, bool), Error> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for (name, tensor) in crate::weights::module_tensors(vae)? {
        h.update(name.as_bytes());
        h.update(format!("{:?}{:?}", tensor.dtype, tensor.shape).as_bytes());
        h.update(&tensor.data);
    }
    if config.prior.conditional {
        // other codes than a whole-pair run's: another file (earlier files keep their names)
        h.update(format!("conditional {}", config.prior.order).as_bytes());
    }
    if let Some(half) = alone {
        h.update(format!("{half} alone").as_bytes());
    }
    h.update((data.len() as u64).to_le_bytes());
    h.update((data.length as u64).to_le_bytes());
    h.update(&data.images);
    for t in &data.tokens {
        h.update(t.to_le_bytes());
    }
    let key: String = h.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect();
    let path = dir.join(format!("codes-{key}.u32"));
    let codebook = vae.decoder.quantizer.codebook.dims()[0];
    if let Ok(bytes) = std::fs::read(&path) {
        let codes: Vec<u32> = bytes.chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        let n = data.len();
        // a file of another length or codebook (foreign, or cut short) is encoded again
        let length = config.stage1.sequence_length();
        if n > 0 && bytes.len() % 4 == 0 && codes.len() == n * length && codes.iter().all(|&c| (c as usize) < codebook)
        {
            return Ok((CodeSequences { codes, length }, true));
        }
    }
    let sequences = match alone {
        Some(half) => encode_alone(vae, data, batch, device, half),
        None => encode_for_prior(vae, data, batch, device, config),
    };
    let bytes: Vec<u8> = sequences.codes.iter().flat_map(|c| c.to_le_bytes()).collect();
    crate::error::write_atomic(&path, &bytes)?;
    Ok((sequences, false))
}

/// The prior's step over a set of code sequences.
pub struct PriorStep<'a> {
    sequences: &'a CodeSequences,
    device: Device,
    /// Classifier-free guidance's training: the share of sequences whose first
    /// `first_part` codes are hidden, drawn per step from `seed`.
    hide: Option<Hide>,
    /// A conditional prior's: the first `n` codes are given, not predicted.
    given: Option<usize>,
}

#[derive(Debug, Clone, Copy)]
struct Hide {
    share: f64,
    first_part: usize,
    seed: u64,
}

impl<'a> PriorStep<'a> {
    /// Steps over `sequences`; `device` must be an autodiff device.
    pub fn new(sequences: &'a CodeSequences, device: &Device) -> Self {
        Self { sequences, device: device.clone(), hide: None, given: None }
    }

    /// Leaves the first `first_part` codes of every sequence unpredicted (`prior.conditional`).
    pub fn given(mut self, conditional: bool, first_part: usize) -> Self {
        self.given = conditional.then_some(first_part);
        self
    }

    /// Hides the first `first_part` codes of a `share` of the sequences (`prior.unconditional`),
    /// which ones drawn at each step from `seed`.
    pub fn hiding(mut self, share: f64, first_part: usize, seed: u64) -> Self {
        self.hide = (share > 0.0).then_some(Hide { share, first_part, seed });
        self
    }
}

impl Stage<Prior> for PriorStep<'_> {
    const NAME: &'static str = "prior";

    fn items(&self) -> usize {
        self.sequences.len()
    }

    fn step(
        &mut self,
        model: Prior,
        optim: &mut ModuleOptimizer,
        lr: f64,
        batch: &[usize],
        step: usize,
    ) -> (Prior, StepMetrics) {
        let flat = self.sequences.rows(batch);
        let sequences =
            Tensor::<2, Int>::from_data(TensorData::new(flat, [batch.len(), self.sequences.length]), &self.device);
        let hidden: Vec<bool> = match self.hide {
            Some(h) => {
                let mut rng = Rng::new(h.seed, Stream::TrainStep(step as u64));
                batch.iter().map(|_| (rng.unit_f32() as f64) < h.share).collect()
            }
            None => vec![false; batch.len()],
        };
        // both mark the same first part; with neither, this is the plain loss
        let first_part = self.hide.map(|h| h.first_part).or(self.given).unwrap_or(0);
        let loss = model.loss_hiding(sequences, &hidden, first_part, self.given.is_some());
        let value = loss.clone().into_scalar::<f32>() as f64;
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        (optim.step(lr, model, grads), vec![("loss", value)])
    }
}

/// Trains (or resumes) the prior in `dir` on code sequences (stage 1's order; the prior
/// reads them in its config's order). A new run starts from `start`'s weights where given
/// (a trained prior of the same order and width, e.g. a bundle's: fine-tuning; one with fewer
/// layers than the config's is grown first, [`Prior::grown`]), else from
/// random ones; a resumed run keeps its checkpoint's config and weights. `device` must be an
/// autodiff device.
#[allow(clippy::too_many_arguments)]
pub fn train_prior(
    dir: &Path,
    config: &MxqConfig,
    tokenizer: &CaptionTokenizer,
    sequences: &CodeSequences,
    options: &TrainOptions,
    start: Option<Prior>,
    device: &Device,
    progress: Progress,
) -> Result<Prior, Error> {
    let ckpt = Checkpoint::new(dir);
    let (state, resume) = start_state(&ckpt, PriorStep::NAME, config, tokenizer, options)?;
    let mut model = init_model(state.options.seed, device, |d| Prior::for_config(&state.config, d));
    if let Some(start) = start.filter(|_| !resume) {
        // a deeper config than the start's: identity blocks on top, drawn from the run's seed
        let cpu = crate::cpu();
        cpu.seed(state.options.seed);
        let start = start.grown(&state.config.prior, &cpu);
        // the device's own draws (dropout) start where `init_model` left them, CPU or not
        device.seed(state.options.seed);
        model = model
            .try_load_record(start.into_record())
            .map_err(|e| ckpt.bad(format!("the prior to start from does not fit the run's prior config: {e}")))?;
    }
    let sequences = sequences.in_prior_order(&state.config);
    let prior = &state.config.prior;
    let first = state.config.first_part();
    let mut stage = PriorStep::new(&sequences, device)
        .hiding(prior.unconditional, first, state.options.seed)
        .given(prior.conditional, first);
    fit(model, &mut stage, state, &ckpt, resume, progress)
}

/// Loads a trained prior (inference mode) from its checkpoint folder.
pub fn load_prior(dir: &Path, device: &Device) -> Result<(Prior, TrainState), Error> {
    let ckpt = Checkpoint::new(dir);
    let state = ckpt.state()?;
    let model = ckpt.load_model(Prior::for_config(&state.config, device))?;
    Ok((model.valid(), state))
}
