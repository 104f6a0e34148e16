// The page: controls, the worker's messages turned into cards. No model logic lives here —
// the worker (worker.js) runs the wasm crate, which runs the core crate.
const $ = (id) => document.getElementById(id);
const form = $('controls');
const query = new URLSearchParams(location.search);
const bundleUrl = query.get('bundle') || 'assets/demo.mxq.safetensors';
const SIZE = 64; // generated images are 64×64

// Options: the query string overrides the form's defaults (count, seed, temperature, top_k,
// top_p, batch, backend=cpu|webgpu, autorun=1, embed=1).
const fields = { count: 'count', seed: 'seed', temperature: 'temperature', top_k: 'top_k', top_p: 'top_p', batch: 'batch' };
for (const [key, name] of Object.entries(fields)) {
  if (query.has(key)) form.elements[name].value = query.get(key);
}
form.elements.cpu.checked = query.get('backend') === 'cpu';
if (query.get('embed') === '1') document.body.classList.add('embed');

function options() {
  const number = (name, lo, hi, fallback) => {
    const raw = form.elements[name].value;
    const v = raw === '' ? NaN : Number(raw); // an empty field means the default
    return Number.isFinite(v) ? Math.min(hi, Math.max(lo, v)) : fallback;
  };
  return {
    count: Math.round(number('count', 1, 64, 16)),
    batch: Math.round(number('batch', 1, 64, 4)),
    temperature: number('temperature', 0, 2, defaultTemperature),
    topK: Math.round(number('top_k', 0, 256, 0)),
    topP: number('top_p', 0.05, 1, 1),
    seed: Math.round(number('seed', 0, 4294967295, 1)),
  };
}

let worker = null;
// the core's default (mxq::sample::DEFAULT_TEMPERATURE), from the worker once the bundle is ready
let defaultTemperature = null;
let codesPerPair = { image: 64, text: 8, notDrawn: 0xffffffff };
let cards = [];
let autorun = query.get('autorun') === '1';

function setState(state, text) {
  document.body.dataset.state = state;
  if (text !== undefined) $('status').textContent = text;
}

function showError(message) {
  $('error').hidden = false;
  $('error').textContent = message;
  $('download').hidden = true;
  setState('error', 'Something went wrong — see the message below.');
}

function start() {
  if (worker) worker.terminate();
  $('error').hidden = true;
  $('generate').disabled = true;
  $('backend').textContent = '…';
  setState('loading', 'Downloading the bundle…');
  worker = new Worker('./worker.js', { type: 'module' });
  worker.onmessage = ({ data }) => handlers[data.type](data);
  worker.onerror = (e) => {
    // a panic has already posted its own message; keep that one
    if ($('error').hidden) showError(`The model's worker stopped: ${e.message || 'unknown error'}`);
  };
  worker.postMessage({ type: 'load', url: bundleUrl, forceCpu: form.elements.cpu.checked });
}

// a code's colour: its index around the hue circle
const hue = (code) => `hsl(${Math.round((code * 360) / 256)} 70% 55%)`;

function drawCodes(card, codes) {
  const ctx = card.canvas.getContext('2d');
  const side = Math.sqrt(codesPerPair.image);
  const cell = SIZE / side;
  ctx.fillStyle = '#111';
  ctx.fillRect(0, 0, SIZE, SIZE);
  codes.forEach((code, i) => {
    if (code === codesPerPair.notDrawn || i >= codesPerPair.image) return;
    ctx.fillStyle = hue(code);
    ctx.fillRect((i % side) * cell, Math.floor(i / side) * cell, cell - 1, cell - 1);
  });
  card.text.replaceChildren(
    ...codes
      .slice(codesPerPair.image)
      .filter((code) => code !== codesPerPair.notDrawn)
      .map((code) => {
        const chip = document.createElement('i');
        chip.style.background = hue(code);
        return chip;
      }),
  );
}

function newCard(index) {
  const element = document.createElement('figure');
  element.className = 'card pending';
  const canvas = document.createElement('canvas');
  canvas.width = canvas.height = SIZE;
  const text = document.createElement('div');
  text.className = 'text-codes';
  const caption = document.createElement('figcaption');
  caption.textContent = `pair ${index + 1}: sampling…`;
  element.append(canvas, text, caption);
  $('cards').append(element);
  return { element, canvas, text, caption };
}

const handlers = {
  progress({ loaded, total }) {
    const bar = $('download');
    bar.hidden = false;
    const mb = (n) => (n / 1e6).toFixed(1);
    if (total) {
      bar.max = total;
      bar.value = loaded;
      $('status').textContent = `Downloading the bundle… ${mb(loaded)} of ${mb(total)} MB`;
    } else {
      bar.removeAttribute('value');
      $('status').textContent = `Downloading the bundle… ${mb(loaded)} MB`;
    }
  },
  ready({ backend, imageCodes, textCodes, notDrawn, temperature, bytes, loadMs }) {
    defaultTemperature = Number(temperature.toFixed(4));
    if (!query.has('temperature') && form.elements.temperature.value === '') {
      form.elements.temperature.value = defaultTemperature;
    }
    codesPerPair = { image: imageCodes, text: textCodes, notDrawn };
    $('download').hidden = true;
    $('backend').textContent = backend;
    $('generate').disabled = false;
    setState('ready', `Bundle ready (${(bytes / 1e6).toFixed(1)} MB, loaded in ${loadMs.toFixed(0)} ms).`);
    if (autorun) {
      autorun = false;
      generate();
    }
  },
  step({ first, codes }) {
    const batch = stepRows(first);
    const step = codes.length / batch;
    for (let b = 0; b < batch; b++) drawCodes(cards[first + b], Array.from(codes.subarray(b * step, (b + 1) * step)));
  },
  pairs({ first, pairs }) {
    pairs.forEach((pair, i) => {
      const card = cards[first + i];
      card.canvas.getContext('2d').putImageData(new ImageData(pair.image, SIZE, SIZE), 0, 0);
      card.caption.textContent = pair.caption;
      card.element.classList.remove('pending');
      card.element.dataset.codes = Array.from(pair.codes).join(' ');
    });
  },
  done({ count, ms, firstPairMs, sinceBundleMs }) {
    const batches = Math.ceil(count / batchSize);
    let timing = `· ${count} pairs in ${(ms / 1000).toFixed(2)} s: ${(ms / batches).toFixed(0)} ms per batch of ≤ ${batchSize}, ` +
      `${(ms / count).toFixed(0)} ms per pair, first pair after ${firstPairMs.toFixed(0)} ms`;
    if (sinceBundleMs !== null) timing += ` · bundle → first pair ${sinceBundleMs.toFixed(0)} ms`;
    $('timing').textContent = timing;
    Object.assign(document.body.dataset, { ms: ms.toFixed(1), firstPairMs: firstPairMs.toFixed(1) });
    if (sinceBundleMs !== null) document.body.dataset.sinceBundleMs = sinceBundleMs.toFixed(1);
    $('generate').disabled = false;
    setState('done', `Generated ${count} pairs.`);
  },
  error({ message }) {
    showError(message);
  },
};

// the batch a step message belongs to: the cards from `first` up to the next batch start
let batchSize = 1;
const stepRows = (first) => Math.min(batchSize, cards.length - first);

function generate() {
  const opts = options();
  batchSize = opts.batch;
  $('cards').replaceChildren();
  cards = Array.from({ length: opts.count }, (_, i) => newCard(i));
  $('generate').disabled = true;
  setState('generating', `Generating ${opts.count} pairs…`);
  worker.postMessage({ type: 'generate', ...opts });
}

form.addEventListener('submit', (e) => {
  e.preventDefault();
  generate();
});
form.elements.cpu.addEventListener('change', start);
start();
