//! The browser side of mxq: one wasm-bindgen class, [`Demo`], that the page's Web Worker
//! (`web/worker.js`) drives. It holds no model code: the bundle loads with
//! [`mxq::bundle::load`], codes are drawn with [`mxq::sample::Sampling`] in the same
//! batches and seeds as `mxq generate` ([`mxq::sample::batches`]), and the bundle's
//! decoders turn them into pairs. Every read-back is awaited, because WebGPU in a browser
//! has no synchronous read (burn#4487); on the CPU the await resolves at once.

use burn::prelude::*;
use mxq::bundle::{Bundle, LoadOptions};
use mxq::sample::conditional::{CAPTION_CANDIDATES, CAPTION_TEMPERATURE, Encoder, Given};
use mxq::sample::rerank::{Rerank, Scored, Scoring};
use mxq::sample::sampler::CachedPrior;
use mxq::sample::{GeneratedPair, SampleOptions, Sampling, batches};
use wasm_bindgen::prelude::*;

thread_local! {
    /// [`Demo::warm_up`]'s bundle bytes (after step 0) and loaded bundle (after step 1);
    /// emptied by its last step and by [`Demo::load`].
    static WARM: std::cell::RefCell<(Vec<u8>, Option<Bundle>)> = const { std::cell::RefCell::new((Vec::new(), None)) };
}

/// What `on_step` shows at a position the prior has not drawn yet.
pub const NOT_DRAWN: u32 = u32::MAX;

/// A loaded bundle on the device it runs on; for the conditional modes, fetched only when
/// one is used, the encoder file's encoder (on the CPU: one pass per caption or image, and
/// its codes are read back at once) and the captioner bundle (beside the demo bundle).
#[wasm_bindgen]
pub struct Demo {
    bundle: Bundle,
    device: Device,
    backend: String,
    encoder: Option<Encoder>,
    captioner: Option<Bundle>,
}

#[wasm_bindgen]
impl Demo {
    /// Loads bundle bytes on WebGPU when the browser offers an adapter and `force_cpu` is
    /// false, otherwise on the CPU. A truncated, corrupted or wrong-version bundle is an
    /// error whose message names the fault (shown on the page).
    pub async fn load(bytes: Vec<u8>, force_cpu: bool) -> Result<Demo, JsError> {
        // a warm-up the bundle cut short leaves nothing behind
        WARM.with(|w| *w.borrow_mut() = (Vec::new(), None));
        std::panic::set_hook(Box::new(|info| {
            console_error_panic_hook::hook(info);
            report_panic(&info.to_string());
        }));
        let (device, backend) = pick_device(force_cpu).await;
        let bundle = mxq::bundle::load(&bytes, &device, LoadOptions::default()).map_err(|e| js(&e))?;
        Ok(Demo { bundle, device, backend, encoder: None, captioner: None })
    }

    /// Loads an encoder file (or a whole stage-1 file) as the encoder of the conditional
    /// modes, refused (with the reason) where it is not the demo bundle's stage 1.
    pub fn load_encoder(&mut self, bytes: Vec<u8>) -> Result<(), JsError> {
        let file = mxq::bundle::load_encoder(&bytes, &mxq::cpu()).map_err(|e| js(&e))?;
        self.encoder = Some(self.bundle.encoder(file).map_err(|e| js(&e))?);
        Ok(())
    }

    /// Loads the captioner bundle (an image-first prior on the same stage 1) beside the demo
    /// bundle, on the same device.
    pub fn load_captioner(&mut self, bytes: Vec<u8>) -> Result<(), JsError> {
        let captioner = mxq::bundle::load(&bytes, &self.device, LoadOptions::default()).map_err(|e| js(&e))?;
        if let Some(encoder) = &self.encoder {
            captioner.check_encoder(encoder).map_err(|e| js(&e))?;
        }
        self.captioner = Some(captioner);
        Ok(())
    }

    #[wasm_bindgen(getter)]
    pub fn has_encoder(&self) -> bool {
        self.encoder.is_some()
    }

    #[wasm_bindgen(getter)]
    pub fn has_captioner(&self) -> bool {
        self.captioner.is_some()
    }

    /// The caption the captioner gives an encoded PNG (other formats: the page's PNG of what
    /// the browser decoded; other sizes resized as in training): the image's codes with the
    /// caption masked, then the text codes drawn as `mxq caption` draws them by default:
    /// [`CAPTION_CANDIDATES`] captions at [`CAPTION_TEMPERATURE`], the one the demo bundle's
    /// prior finds most likely with the image kept (the same caption as natively, every time).
    pub async fn caption(&self, image: Vec<u8>) -> Result<String, JsError> {
        let (Some(captioner), Some(encoder)) = (&self.captioner, &self.encoder) else {
            return Err(JsError::new("captioning needs the encoder file and the captioner: load both first"));
        };
        let rgb = mxq::data::pairs::decode_image(&image, "the image to caption").map_err(|e| js(&e))?;
        let opts = SampleOptions { temperature: CAPTION_TEMPERATURE, ..SampleOptions::default() };
        let given = captioner.given_image(encoder, &rgb, &mxq::cpu()).map_err(|e| js(&e))?;
        let rerank = Rerank::new(captioner, &self.bundle, CAPTION_CANDIDATES, Scored::WholePair).map_err(|e| js(&e))?;
        // as natively (`Bundle::generate_from`): one pair, so one chunk of candidates
        let (rows, opts) = rerank.candidate_rows(std::slice::from_ref(&given.prefix), opts, 0);
        let candidates = draw_any(captioner, &self.device, &rows, opts, |_| Ok(())).await?;
        let (sequences, from) = rerank.scored_sequences(captioner, &candidates);
        let scores = score_any(&self.bundle, &self.device, sequences, from).await?;
        let chosen = rerank.choose(candidates, &scores);
        let mut pairs = decode_pairs(captioner, &self.device, chosen, &given).await?;
        Ok(pairs.remove(0).caption)
    }

    /// The backend in use: `WebGPU (adapter)` or `CPU (why WebGPU was not used)`.
    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        self.backend.clone()
    }

    /// The core's default sampling temperature ([`mxq::sample::DEFAULT_TEMPERATURE`], also the
    /// CLI's), which the page's form starts from.
    #[wasm_bindgen(getter)]
    pub fn default_temperature(&self) -> f32 {
        SampleOptions::default().temperature
    }

    /// The code `on_step` shows at positions not drawn yet.
    #[wasm_bindgen(getter)]
    pub fn not_drawn(&self) -> u32 {
        NOT_DRAWN
    }

    /// Codes per pair: the image's grid (8×8) first, then the text's positions (8).
    #[wasm_bindgen(getter)]
    pub fn image_codes(&self) -> usize {
        self.bundle.config.stage1.image_positions()
    }

    #[wasm_bindgen(getter)]
    pub fn text_codes(&self) -> usize {
        self.bundle.config.stage1.text_positions()
    }

    /// Warms the CPU path up while the bundle downloads, in steps the worker runs one at a
    /// time (yielding between them, and stopping once the bundle is in): the wasm engine
    /// first runs code compiled without optimisation and optimises what runs often, so the
    /// first pair after a cold load took about 3× a later one (node's profile: 643 ms against
    /// 208). Step 0 writes a bundle of the demo's shape with untrained weights (int4, as the
    /// shipped one), step 1 loads it, step 2 draws and decodes one pair from it: the same
    /// code the real bundle then runs. Returns whether a step is left; nothing is kept after
    /// the last step or a [`Demo::load`].
    pub async fn warm_up(step: u32) -> Result<bool, JsError> {
        match step {
            0 => {
                let bytes = warm_up_bundle().map_err(|e| js(&e))?;
                WARM.with(|w| w.borrow_mut().0 = bytes);
            }
            1 => {
                let bytes = WARM.with(|w| std::mem::take(&mut w.borrow_mut().0));
                let bundle = mxq::bundle::load(&bytes, &mxq::cpu(), LoadOptions::default()).map_err(|e| js(&e))?;
                WARM.with(|w| w.borrow_mut().1 = Some(bundle));
            }
            _ => {
                let Some(bundle) = WARM.with(|w| w.borrow_mut().1.take()) else { return Ok(false) };
                let opts = SampleOptions { seed: 1, ..bundle.default_options() };
                sample_pairs(&bundle, &mxq::cpu(), 1, opts, &Given::default(), |_| Ok(())).await?;
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Generates `count` pairs in batches of at most `batch` (the first batch from `seed`, later
    /// ones from seeds mixed from it: [`batches`], as natively); with a `caption`, images for it (each pair carries the caption; needs
    /// [`Self::load_encoder`] first). After each prior step, `on_step(first, codes)` gets the
    /// index of the batch's first pair and its codes so far (`Uint32Array`, one row per pair
    /// of all the sequence's codes in stage 1's order, image then text, [`NOT_DRAWN`] where
    /// the prior has not drawn yet: it may draw the caption first); after each batch,
    /// `on_pairs(first, pairs)` gets an array of `{ image: Uint8ClampedArray (64×64 RGBA),
    /// caption, codes: Uint32Array }`.
    #[allow(clippy::too_many_arguments)]
    pub async fn generate(
        &self,
        count: usize,
        batch: usize,
        temperature: f32,
        top_k: usize,
        top_p: f32,
        seed: u32,
        caption: Option<String>,
        on_step: js_sys::Function,
        on_pairs: js_sys::Function,
    ) -> Result<(), JsError> {
        // the bundle's default guidance, as `mxq generate`'s
        let opts = SampleOptions { temperature, top_k, top_p, seed: seed as u64, ..self.bundle.default_options() };
        self.bundle.check_options(&opts).map_err(|e| js(&e))?;
        mxq::sample::check_counts(count, batch).map_err(|e| js(&e))?;
        let given = match (&caption, &self.encoder) {
            (None, _) => Given::default(),
            (Some(caption), Some(encoder)) => {
                self.bundle.given_caption(encoder, caption, &mxq::cpu()).map_err(|e| js(&e))?
            }
            (Some(_), None) => return Err(JsError::new("drawing a caption needs the encoder file: load it first")),
        };
        self.bundle.check_given(&given).map_err(|e| js(&e))?;
        let mut first = 0;
        for (n, opts) in batches(count, batch, opts) {
            let pairs = sample_pairs(&self.bundle, &self.device, n, opts, &given, |so_far| {
                call(&on_step, first, &js_sys::Uint32Array::from(so_far).into())
            })
            .await?;
            let array = js_sys::Array::new();
            for pair in pairs {
                let object = js_sys::Object::new();
                let set = |k: &str, v: JsValue| js_sys::Reflect::set(&object, &k.into(), &v);
                set("image", js_sys::Uint8ClampedArray::from(&rgba(&pair.image)[..]).into()).map_err(js_error)?;
                set("caption", pair.caption.into()).map_err(js_error)?;
                set("codes", js_sys::Uint32Array::from(&pair.codes[..]).into()).map_err(js_error)?;
                array.push(&object);
            }
            call(&on_pairs, first, &array.into())?;
            first += n;
        }
        Ok(())
    }
}

/// The bytes of a bundle shaped as the shipped demo bundle (the demo preset, 16 caption
/// codes, the text map factored at rank 64, caption first, trained with unconditional
/// sequences; int4) with untrained weights
/// and a tokenizer trained on two captions: what [`Demo::warm_up`] runs.
fn warm_up_bundle() -> Result<Vec<u8>, mxq::Error> {
    use mxq::bundle::{Generator, Precision};
    let captions = ["a red 3 on the upper left.", "the lower right has a blue 7, a green 1 in the center."];
    let tokenizer = mxq::data::tokenizer::CaptionTokenizer::train(captions.into_iter(), 128, 64)?;
    let mut config = mxq::MxqConfig::demo();
    config.stage1.text.positions = 16;
    config.stage1.text.map_rank = Some(64);
    config.stage1.text.vocab_size = tokenizer.vocab_size();
    config.prior.order = mxq::config::SequenceOrder::TextFirst;
    config.prior.unconditional = 0.1;
    let generator = Generator::new(&config, &mxq::cpu());
    mxq::bundle::export(&generator, &config, &tokenizer, Precision::Int4)
}

/// Samples `n` sequences from `bundle`'s prior, starting from what is `given`, and decodes
/// them (every read-back awaited); `on_step` gets the codes so far in stage 1's order after
/// each prior step ([`NOT_DRAWN`] where not drawn yet). On the CPU the prior runs on the
/// packed kernels where the bundle has them, as natively ([`Bundle::packed_for`]).
async fn sample_pairs(
    bundle: &Bundle,
    device: &Device,
    n: usize,
    opts: SampleOptions,
    given: &Given,
    on_step: impl FnMut(&[u32]) -> Result<(), JsError>,
) -> Result<Vec<GeneratedPair>, JsError> {
    let codes = draw_any(bundle, device, &vec![given.prefix.clone(); n], opts, on_step).await?;
    decode_pairs(bundle, device, codes, given).await
}

/// Sequences completing `prefixes` (one each) on the packed prior where the bundle has one
/// and it gains, else on burn's layers, as natively ([`Bundle::packed_for`]).
async fn draw_any(
    bundle: &Bundle,
    device: &Device,
    prefixes: &[Vec<u32>],
    opts: SampleOptions,
    on_step: impl FnMut(&[u32]) -> Result<(), JsError>,
) -> Result<Vec<Vec<u32>>, JsError> {
    match bundle.packed_for(prefixes.len(), &opts) {
        Some(packed) => draw_codes(packed, bundle, device, prefixes, opts, on_step).await,
        None => draw_codes(&bundle.generator.prior, bundle, device, prefixes, opts, on_step).await,
    }
}

/// `sequences` (the prior's order) scored from position `from` on, on the prior
/// [`Bundle::score`] picks natively.
async fn score_any(
    bundle: &Bundle,
    device: &Device,
    sequences: Vec<Vec<u32>>,
    from: usize,
) -> Result<Vec<f32>, JsError> {
    match bundle.packed_for_scoring(sequences.len()) {
        Some(packed) => score_codes(packed, device, sequences, from).await,
        None => score_codes(&bundle.generator.prior, device, sequences, from).await,
    }
}

/// The scoring steps for [`score_any`] on `prior`.
async fn score_codes<P: CachedPrior>(
    prior: &P,
    device: &Device,
    sequences: Vec<Vec<u32>>,
    from: usize,
) -> Result<Vec<f32>, JsError> {
    let mut scoring = Scoring::new(prior, sequences, from);
    while !scoring.done() {
        let logits = read_f32(scoring.logits(prior, device)).await?;
        scoring.push(&logits);
    }
    Ok(scoring.into_scores())
}

/// Code sequences (the prior's order) decoded into pairs, with what was `given` in place.
async fn decode_pairs(
    bundle: &Bundle,
    device: &Device,
    codes: Vec<Vec<u32>>,
    given: &Given,
) -> Result<Vec<GeneratedPair>, JsError> {
    let codes = bundle.unified_codes(codes);
    let (images, tokens) = bundle.decode_tensors(&codes, device);
    let (images, tokens) = (read_f32(images).await?, read_ints(tokens).await?);
    let mut pairs = bundle.pairs_from(codes, &images, &tokens);
    given.apply(&mut pairs);
    Ok(pairs)
}

/// The prior's steps for [`draw_any`] on `prior` (burn's layers or the packed kernels).
async fn draw_codes<P: CachedPrior>(
    prior: &P,
    bundle: &Bundle,
    device: &Device,
    prefixes: &[Vec<u32>],
    opts: SampleOptions,
    mut on_step: impl FnMut(&[u32]) -> Result<(), JsError>,
) -> Result<Vec<Vec<u32>>, JsError> {
    let config = &bundle.config;
    let mut sampling = Sampling::new(prior, prefixes.len(), config.stage1.sequence_length(), opts)
        .with_prefixes(prefixes)
        .guided(config.first_part());
    while !sampling.done() {
        let logits = read_f32(sampling.logits(prior, device)).await?;
        sampling.push(&logits);
        let so_far: Vec<u32> = sampling
            .codes()
            .iter()
            .flat_map(|drawn| config.to_unified_order(drawn).into_iter().map(|c| c.unwrap_or(NOT_DRAWN)))
            .collect();
        on_step(&so_far)?;
    }
    Ok(sampling.into_codes())
}

fn js(e: &mxq::Error) -> JsError {
    JsError::new(&e.to_string())
}

/// A panic aborts the wasm instance and the worker sees only "unreachable": post the panic's
/// own message to the page first, as the worker's error messages are posted.
fn report_panic(message: &str) {
    let global = js_sys::global();
    let message_object = js_sys::Object::new();
    let _ = js_sys::Reflect::set(&message_object, &"type".into(), &"error".into());
    let _ = js_sys::Reflect::set(&message_object, &"message".into(), &format!("internal error: {message}").into());
    if let Ok(post) =
        js_sys::Reflect::get(&global, &"postMessage".into()).and_then(|f| f.dyn_into::<js_sys::Function>())
    {
        let _ = post.call1(&global, &message_object);
    }
}

/// RGB bytes → RGBA bytes (opaque), the layout of a canvas `ImageData`.
pub fn rgba(rgb: &[u8]) -> Vec<u8> {
    rgb.chunks(3).flat_map(|p| [p[0], p[1], p[2], 255]).collect()
}

fn read_error(e: impl std::fmt::Debug) -> JsError {
    JsError::new(&format!("reading a result back failed: {e:?}"))
}

async fn read_f32<const D: usize>(tensor: Tensor<D>) -> Result<Vec<f32>, JsError> {
    tensor.into_data_async().await.map_err(read_error)?.try_into_vec_as::<f32>().map_err(data_error)
}

async fn read_ints<const D: usize>(tensor: Tensor<D, Int>) -> Result<Vec<i64>, JsError> {
    tensor.into_data_async().await.map_err(read_error)?.try_into_vec_as::<i64>().map_err(data_error)
}

fn data_error(e: burn::tensor::DataError) -> JsError {
    JsError::new(&format!("unexpected result type: {e:?}"))
}

fn js_error(e: JsValue) -> JsError {
    JsError::new(&format!("{e:?}"))
}

fn call(f: &js_sys::Function, first: usize, value: &JsValue) -> Result<(), JsError> {
    f.call2(&JsValue::NULL, &JsValue::from(first as u32), value).map(|_| ()).map_err(js_error)
}

/// WebGPU when asked for and available, else the CPU, with the reason in the label.
async fn pick_device(force_cpu: bool) -> (Device, String) {
    if force_cpu {
        return (mxq::cpu(), "CPU (switched to the CPU on the page)".into());
    }
    match webgpu().await {
        Ok(picked) => picked,
        Err(why) => (mxq::cpu(), format!("CPU (WebGPU not used: {why})")),
    }
}

/// WebGPU in this build: the adapter the browser offers (its name for the label), then
/// burn's WebGPU device on it.
#[cfg(all(target_family = "wasm", feature = "webgpu"))]
async fn webgpu() -> Result<(Device, String), String> {
    use burn::tensor::wgpu::WgpuBackend;
    thread_local! {
        // the runtime initialises once per page: later loads (after a CPU switch) reuse it
        static WEBGPU: std::cell::RefCell<Option<(Device, String)>> = const { std::cell::RefCell::new(None) };
    }
    if let Some(picked) = WEBGPU.with(|w| w.borrow().clone()) {
        return Ok(picked);
    }
    let name = adapter_name().await?;
    let (device, _setup) = Device::wgpu_options()
        .graphics_api(WgpuBackend::WebGpu)
        .init_with_setup_async()
        .await
        .map_err(|e| format!("no WebGPU device ({e})"))?;
    let picked = (device, format!("WebGPU ({name})"));
    WEBGPU.with(|w| *w.borrow_mut() = Some(picked.clone()));
    Ok(picked)
}

/// The CPU-only build (the one the worker loads where the browser offers no adapter): says
/// why WebGPU is not used, as the WebGPU build would.
#[cfg(all(target_family = "wasm", not(feature = "webgpu")))]
async fn webgpu() -> Result<(Device, String), String> {
    adapter_name().await?;
    Err("this is the page's CPU-only build (the worker fetches the WebGPU build where an adapter is offered)".into())
}

/// The name of the WebGPU adapter the browser offers, or why there is none. The name comes
/// from the browser (wgpu maps only its description, which SwiftShader leaves empty).
#[cfg(target_family = "wasm")]
async fn adapter_name() -> Result<String, String> {
    let get = |object: &JsValue, key: &str| js_sys::Reflect::get(object, &key.into()).unwrap_or(JsValue::UNDEFINED);
    let gpu = get(&get(&js_sys::global(), "navigator"), "gpu");
    if gpu.is_undefined() || gpu.is_null() {
        return Err("this browser has no navigator.gpu".into());
    }
    let request = get(&gpu, "requestAdapter").dyn_into::<js_sys::Function>().map_err(|_| "no requestAdapter")?;
    let promise = request.call0(&gpu).map_err(|e| format!("requestAdapter failed: {e:?}"))?;
    let adapter = wasm_bindgen_futures::JsFuture::from(js_sys::Promise::from(promise))
        .await
        .map_err(|e| format!("requestAdapter failed: {e:?}"))?;
    if adapter.is_null() || adapter.is_undefined() {
        return Err("the browser offers no WebGPU adapter".into());
    }
    let info = get(&adapter, "info");
    let name = ["vendor", "architecture", "device", "description"]
        .iter()
        .filter_map(|k| get(&info, k).as_string())
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    Ok(if name.is_empty() { "unnamed adapter".into() } else { name })
}

#[cfg(not(target_family = "wasm"))]
async fn webgpu() -> Result<(Device, String), String> {
    Err("WebGPU is only used in the browser".into())
}

#[cfg(test)]
mod tests {
    #[test]
    fn rgba_adds_an_opaque_alpha() {
        assert_eq!(super::rgba(&[1, 2, 3, 4, 5, 6]), vec![1, 2, 3, 255, 4, 5, 6, 255]);
    }

    /// The warm-up runs the code the shipped bundle runs: the same model shapes and storage;
    /// only the tokenizer (so the vocabulary) and how stage 1 was trained (its masking) differ.
    #[test]
    fn the_warm_up_bundle_is_shaped_as_the_shipped_one() {
        let load = |bytes: &[u8]| mxq::bundle::load(bytes, &mxq::cpu(), Default::default()).unwrap();
        let shipped = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../assets/demo.mxq.safetensors")).unwrap();
        let (shipped, warm) = (load(&shipped), load(&super::warm_up_bundle().unwrap()));
        let shape = |b: &mxq::bundle::Bundle| {
            let mut config = b.config.clone();
            config.stage1.text.vocab_size = 0;
            let mut config = serde_json::to_value(&config).unwrap();
            config["stage1"].as_object_mut().unwrap().remove("masking");
            (config, b.precision, b.packed_prior.is_some())
        };
        assert_eq!(shape(&warm), shape(&shipped));
    }
}
