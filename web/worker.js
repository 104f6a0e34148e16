// The Web Worker that runs the model, so the page stays responsive even on the CPU path.
// It downloads the bundle (reporting progress), hands the bytes to the wasm class `Demo`
// (web/src/lib.rs: all model work is the core crate's) and relays its results as messages.
// The files of the conditional modes (the encoder file, the captioner) are fetched the first
// time a mode needs them, so the first pair costs no more bytes.
let Demo = null; // the class of the build this worker loaded
let demo = null;
let files = null; // the URLs from the load message
let bundleArrived = 0; // performance.now() when the bundle's last byte came in

// a file of mxq is at most this large (mxq::bundle::MAX_BUNDLE_BYTES): a download past it stops
const MAX_BYTES = 2 ** 30;

async function download(url, what = 'the bundle') {
  let response;
  try {
    response = await fetch(url);
  } catch (e) {
    throw new Error(`${what} ${url} could not be downloaded (${e.message})`);
  }
  if (!response.ok) {
    throw new Error(`${what} ${url} could not be downloaded: HTTP ${response.status} ${response.statusText}`.trim());
  }
  // Content-Length counts compressed bytes when the server compresses: check it only otherwise.
  const compressed = response.headers.get('content-encoding');
  const total = Number(response.headers.get('content-length')) || 0;
  const reader = response.body.getReader();
  const chunks = [];
  let loaded = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    loaded += value.length;
    if (loaded > MAX_BYTES) {
      reader.cancel();
      throw new Error(`${what} ${url} is larger than ${MAX_BYTES} bytes, more than any file of mxq`);
    }
    postMessage({ type: 'progress', what, loaded, total: compressed ? 0 : total });
  }
  if (!compressed && total && loaded !== total) {
    throw new Error(`${what} download stopped after ${loaded} of ${total} bytes`);
  }
  const bytes = new Uint8Array(loaded);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.length;
  }
  return bytes;
}

// A module of one function that uses a relaxed-SIMD instruction (i8x16.relaxed_swizzle):
// a browser that validates it runs the CPU build with fused multiply-adds (web/fma).
const RELAXED_SIMD = new Uint8Array([
  0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 15, 1, 13, 0,
  65, 1, 253, 15, 65, 2, 253, 15, 253, 128, 2, 11,
]);

// The WebGPU build where the browser offers an adapter and the CPU is not forced; otherwise a
// CPU build: with relaxed SIMD where the browser validates it (and `plainSimd` does not ask
// for the other), else the plain one. A visit fetches one of the three wasm files.
async function loadBuild(forceCpu, plainSimd) {
  const adapter = !forceCpu && navigator.gpu ? await navigator.gpu.requestAdapter().catch(() => null) : null;
  const fma = !adapter && !plainSimd && WebAssembly.validate(RELAXED_SIMD);
  const build = await import(adapter ? './mxq-web-gpu.js' : fma ? './mxq-web-fma.js' : './mxq-web.js');
  await build.default();
  return { Demo: build.Demo, cpu: !adapter, simd: adapter ? null : fma ? 'relaxed' : 'plain' };
}

// While the bundle is still downloading, the CPU path warms its code up (Demo.warm_up: a
// pair from untrained weights of the same shape), one step at a time, yielding between
// steps so the download's chunks are read, and stopping as soon as the bundle is in.
// A step cannot be interrupted: a bundle that comes in during one waits for it (the last,
// one cold pair, is the longest). A warm-up that fails is only a warm-up: the page goes on.
async function warmUp(build, arrived) {
  let steps = 0;
  const start = performance.now();
  try {
    for (let step = 0; build.cpu && !arrived(); step++) {
      const more = await build.Demo.warm_up(step);
      steps++;
      await new Promise((resolve) => setTimeout(resolve, 0));
      if (!more) break;
    }
  } catch (e) {
    console.warn('warm-up stopped:', e);
  }
  return { steps, ms: performance.now() - start };
}

async function load({ url, stage1Url, captionerUrl, forceCpu, plainSimd }) {
  files = { stage1Url, captionerUrl };
  let arrived = false;
  const downloading = download(url).then((bytes) => {
    bundleArrived = performance.now();
    return bytes;
  });
  // in or failed: either way the warm-up stops (a failure is reported by the await below)
  downloading.then(() => (arrived = true), () => (arrived = true));
  const build = await loadBuild(forceCpu, plainSimd);
  Demo = build.Demo;
  const warm = await warmUp(build, () => arrived);
  const bytes = await downloading;
  // "bundle → first pair" counts from the bundle's last byte off the network (resource
  // timing), so a warm-up step the bundle waited for is counted too
  const href = new URL(url, location.href).href;
  const timing = performance.getEntriesByType('resource').find((e) => e.name === href);
  if (timing && timing.responseEnd > 0) bundleArrived = Math.min(bundleArrived, timing.responseEnd);
  const loadStart = performance.now();
  demo = await Demo.load(bytes, forceCpu);
  const loadMs = performance.now() - loadStart;
  postMessage({
    type: 'ready',
    backend: demo.backend,
    simd: build.simd,
    imageCodes: demo.image_codes,
    textCodes: demo.text_codes,
    notDrawn: demo.not_drawn,
    temperature: demo.default_temperature,
    bytes: bytes.length,
    loadMs,
    warmUpSteps: warm.steps,
    warmUpMs: warm.ms,
  });
}

// the encoder half (encoder file) and the captioner, each fetched once, when first needed
async function needEncoder() {
  if (!demo.has_encoder) demo.load_encoder(await download(files.stage1Url, 'the encoder file'));
}

async function needCaptioner() {
  await needEncoder();
  if (!demo.has_captioner) demo.load_captioner(await download(files.captionerUrl, 'the captioner'));
}

async function caption({ id, image }) {
  await needCaptioner();
  const start = performance.now();
  const text = await demo.caption(image);
  postMessage({ type: 'captioned', id, caption: text, ms: performance.now() - start });
}

async function generate({ count, batch, temperature, topK, topP, seed, caption }) {
  if (caption !== undefined) await needEncoder();
  const start = performance.now();
  let firstPairMs = null;
  await demo.generate(
    count, batch, temperature, topK, topP, seed, caption,
    (first, codes) => postMessage({ type: 'step', first, codes }),
    (first, pairs) => {
      if (firstPairMs === null) firstPairMs = performance.now() - start;
      postMessage({ type: 'pairs', first, pairs });
    },
  );
  const ms = performance.now() - start;
  // the first generation after the bundle arrived also reports "bundle → first pair"
  const sinceBundle = bundleArrived ? start - bundleArrived + firstPairMs : null;
  bundleArrived = 0;
  postMessage({ type: 'done', count, ms, firstPairMs, sinceBundleMs: sinceBundle });
}

onmessage = async ({ data }) => {
  try {
    if (data.type === 'load') await load(data);
    else if (data.type === 'generate') await generate(data);
    else if (data.type === 'caption') await caption(data);
  } catch (e) {
    postMessage({ type: 'error', message: String(e && e.message ? e.message : e) });
  }
};
