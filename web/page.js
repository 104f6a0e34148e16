// The page: controls, the worker's messages turned into cards. No model logic lives here —
// the worker (worker.js) runs the wasm crate, which runs the core crate.
const $ = (id) => document.getElementById(id);
const form = $('controls');
const query = new URLSearchParams(location.search);
const bundleUrl = query.get('bundle') || 'assets/demo.mxq.safetensors';
// the conditional modes' files, fetched by the worker only when a mode is first used
const stage1Url = query.get('stage1') || 'assets/stage1/demo-encoder.mxq.safetensors';
const captionerUrl = query.get('captioner') || 'assets/captioner.mxq.safetensors';
const SIZE = 64; // generated images are 64×64

// Options: the query string overrides the form's defaults (count, seed, temperature, top_k,
// top_p, batch, backend=cpu|webgpu, autorun=1, embed=1; caption=… to draw a caption;
// simd=plain runs the CPU build without relaxed SIMD even where the browser has it).
const fields = { count: 'count', seed: 'seed', temperature: 'temperature', top_k: 'top_k', top_p: 'top_p', batch: 'batch' };
for (const [key, name] of Object.entries(fields)) {
  if (query.has(key)) form.elements[name].value = query.get(key);
}
form.elements.cpu.checked = query.get('backend') === 'cpu';
const drawForm = $('draw-caption');
if (query.has('caption')) drawForm.elements.caption.value = query.get('caption');
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

let ready = false; // the bundle is loaded: after an error the next request may still run

function showError(message) {
  if (ready) enable(true);
  $('error').hidden = false;
  $('error').textContent = message;
  $('download').hidden = true;
  setState('error', 'Something went wrong — see the message below.');
}

function start() {
  if (worker) worker.terminate();
  ready = false;
  $('error').hidden = true;
  enable(false);
  $('backend').textContent = '…';
  setState('loading', 'Downloading the bundle…');
  worker = new Worker('./worker.js', { type: 'module' });
  worker.onmessage = ({ data }) => handlers[data.type](data);
  worker.onerror = (e) => {
    // a panic has already posted its own message; keep that one
    if ($('error').hidden) showError(`The model's worker stopped: ${e.message || 'unknown error'}`);
  };
  worker.postMessage({ type: 'load', url: bundleUrl, stage1Url, captionerUrl, forceCpu: form.elements.cpu.checked, plainSimd: query.get('simd') === 'plain' });
}

// one request at a time: the buttons that start one are off while it runs
function enable(on) {
  for (const id of ['generate', 'draw', 'caption-pad']) $(id).disabled = !on;
  document.querySelectorAll('button.caption-this').forEach((b) => (b.disabled = !on));
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
  progress({ what, loaded, total }) {
    const bar = $('download');
    bar.hidden = false;
    const mb = (n) => (n / 1e6).toFixed(1);
    if (total) {
      bar.max = total;
      bar.value = loaded;
      $('status').textContent = `Downloading ${what}… ${mb(loaded)} of ${mb(total)} MB`;
    } else {
      bar.removeAttribute('value');
      $('status').textContent = `Downloading ${what}… ${mb(loaded)} MB`;
    }
  },
  ready({ backend, simd, imageCodes, textCodes, notDrawn, temperature, bytes, loadMs, warmUpSteps, warmUpMs }) {
    defaultTemperature = Number(temperature.toFixed(4));
    if (!query.has('temperature') && form.elements.temperature.value === '') {
      form.elements.temperature.value = defaultTemperature;
    }
    codesPerPair = { image: imageCodes, text: textCodes, notDrawn };
    ready = true;
    $('download').hidden = true;
    $('backend').textContent = backend;
    // the CPU build the worker runs: 'relaxed' (fused multiply-adds) or 'plain'
    if (simd) document.body.dataset.simd = simd;
    else delete document.body.dataset.simd;
    document.body.dataset.loadMs = loadMs.toFixed(1);
    // the steps of the CPU path's warm-up that ran while the bundle downloaded (worker.js)
    document.body.dataset.warmUpSteps = warmUpSteps;
    document.body.dataset.warmUpMs = warmUpMs.toFixed(1);
    enable(true);
    setState('ready', `Bundle ready (${(bytes / 1e6).toFixed(1)} MB, loaded in ${loadMs.toFixed(0)} ms).`);
    if (autorun) {
      autorun = false;
      generate(query.has('caption') ? drawForm.elements.caption.value : undefined);
    }
  },
  step({ first, codes }) {
    const batch = stepRows(first);
    const step = codes.length / batch;
    for (let b = 0; b < batch; b++) drawCodes(cards[first + b], Array.from(codes.subarray(b * step, (b + 1) * step)));
  },
  pairs({ first, pairs }) {
    // when the page's first pair appeared, from the page's opening (its time origin)
    document.body.dataset.firstPairAtMs ??= performance.now().toFixed(1);
    pairs.forEach((pair, i) => {
      const card = cards[first + i];
      card.canvas.getContext('2d').putImageData(new ImageData(pair.image, SIZE, SIZE), 0, 0);
      card.caption.textContent = pair.caption;
      card.element.classList.remove('pending');
      card.element.dataset.codes = Array.from(pair.codes).join(' ');
      const button = document.createElement('button');
      button.className = 'caption-this';
      button.type = 'button';
      button.textContent = 'caption this';
      button.disabled = true; // until the generation is done
      button.addEventListener('click', () => captionCanvas(card));
      card.element.append(button);
    });
  },
  captioned({ id, caption, ms }) {
    const card = captionCards.get(id);
    captionCards.delete(id);
    let line = card.element.querySelector('.captioned');
    if (!line) {
      line = document.createElement('p');
      line.className = 'captioned';
      card.element.append(line);
    }
    line.textContent = `captioner: ${caption}`;
    card.element.dataset.captioned = caption;
    $('download').hidden = true;
    $('timing').textContent = `· captioned in ${ms.toFixed(0)} ms`;
    enable(true);
    setState('done', 'Captioned.');
  },
  done({ count, ms, firstPairMs, sinceBundleMs }) {
    const batches = Math.ceil(count / batchSize);
    let timing = `· ${count} pairs in ${(ms / 1000).toFixed(2)} s: ${(ms / batches).toFixed(0)} ms per batch of ≤ ${batchSize}, ` +
      `${(ms / count).toFixed(0)} ms per pair, first pair after ${firstPairMs.toFixed(0)} ms`;
    if (sinceBundleMs !== null) timing += ` · bundle → first pair ${sinceBundleMs.toFixed(0)} ms`;
    $('timing').textContent = timing;
    Object.assign(document.body.dataset, { ms: ms.toFixed(1), firstPairMs: firstPairMs.toFixed(1) });
    if (sinceBundleMs !== null) document.body.dataset.sinceBundleMs = sinceBundleMs.toFixed(1);
    $('download').hidden = true;
    enable(true);
    setState('done', `Generated ${count} pairs.`);
  },
  error({ message }) {
    showError(message);
  },
};

// the batch a step message belongs to: the cards from `first` up to the next batch start
let batchSize = 1;
const stepRows = (first) => Math.min(batchSize, cards.length - first);

// `caption`: images for it (the worker fetches the encoder file the first time)
function generate(caption) {
  $('error').hidden = true;
  const opts = options();
  batchSize = opts.batch;
  $('cards').replaceChildren();
  cards = Array.from({ length: opts.count }, (_, i) => newCard(i));
  enable(false);
  const what = caption === undefined ? `${opts.count} pairs` : `${opts.count} images for “${caption}”`;
  setState('generating', `Generating ${what}…`);
  worker.postMessage({ type: 'generate', ...opts, caption });
}

// Captioning: the image's encoded bytes go to the worker (the core decodes and resizes them
// as in training); the caption comes back to the card that asked.
const captionCards = new Map();
let nextCaption = 0;

function captionBytes(card, bytes) {
  $('error').hidden = true;
  const id = nextCaption++;
  captionCards.set(id, card);
  enable(false);
  setState('captioning', 'Captioning the image…');
  worker.postMessage({ type: 'caption', id, image: bytes }, [bytes.buffer]);
}

function captionCanvas(card, canvas = card.canvas) {
  canvas.toBlob(async (blob) => captionBytes(card, new Uint8Array(await blob.arrayBuffer())), 'image/png');
}

// an uploaded or dropped image: a card of its own, shown at 64×64. A PNG is captioned from
// its file (as `mxq caption` reads it); any other format the browser decodes (JPEG, WebP,
// GIF…; the page's wasm reads PNG only) from the 64×64 image the card shows.
async function captionFile(file) {
  const card = newCard(cards.length);
  card.element.classList.remove('pending');
  card.caption.textContent = file.name;
  cards.push(card);
  const bytes = new Uint8Array(await file.arrayBuffer());
  try {
    const bitmap = await createImageBitmap(file);
    card.canvas.getContext('2d').drawImage(bitmap, 0, 0, SIZE, SIZE);
    if (file.type !== 'image/png') return captionCanvas(card);
  } catch {
    // not an image the browser shows: the worker's error names the problem
  }
  captionBytes(card, bytes);
}

// the drawing pad: a 64×64 canvas, drawn on with the pointer
const pad = $('pad');
const padContext = pad.getContext('2d');
function clearPad() {
  padContext.fillStyle = '#000';
  padContext.fillRect(0, 0, SIZE, SIZE);
}
clearPad();
let drawing = false;
const padPoint = (e) => {
  const r = pad.getBoundingClientRect();
  return [((e.clientX - r.left) * SIZE) / r.width, ((e.clientY - r.top) * SIZE) / r.height];
};
pad.addEventListener('pointerdown', (e) => {
  drawing = true;
  pad.setPointerCapture(e.pointerId);
  padContext.beginPath();
  padContext.moveTo(...padPoint(e));
});
pad.addEventListener('pointermove', (e) => {
  if (!drawing) return;
  Object.assign(padContext, { strokeStyle: $('pen').value, lineWidth: 4, lineCap: 'round', lineJoin: 'round' });
  padContext.lineTo(...padPoint(e));
  padContext.stroke();
});
pad.addEventListener('pointerup', () => (drawing = false));
$('clear').addEventListener('click', clearPad);
$('caption-pad').addEventListener('click', () => {
  const card = newCard(cards.length);
  card.element.classList.remove('pending');
  card.caption.textContent = 'drawn on the pad';
  card.canvas.getContext('2d').drawImage(pad, 0, 0);
  cards.push(card);
  captionCanvas(card, pad);
});
$('upload').addEventListener('change', (e) => {
  if (e.target.files[0]) captionFile(e.target.files[0]);
  e.target.value = '';
});
document.addEventListener('dragover', (e) => e.preventDefault());
document.addEventListener('drop', (e) => {
  e.preventDefault();
  const file = e.dataTransfer.files[0];
  if (file && !$('generate').disabled) captionFile(file);
});

form.addEventListener('submit', (e) => {
  e.preventDefault();
  generate();
});
drawForm.addEventListener('submit', (e) => {
  e.preventDefault();
  generate(drawForm.elements.caption.value);
});
form.elements.cpu.addEventListener('change', start);
start();
