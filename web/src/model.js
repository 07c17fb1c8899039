// The exported model (img2latex export --format onnx) run by onnxruntime-web's WebAssembly
// backend: the encoder once, then the decoder step a token at a time, greedy under the balance
// constraint, as img2latex_lib/runtime.py's OnnxProducer does with beam size 1.

import * as ort from "../ort/ort.wasm.bundle.min.mjs";

import { BalanceConstraint } from "./constraint.js";
import { greedy } from "./search.js";
import { decode } from "./tokens.js";

// Threads need a cross-origin isolated page (COOP/COEP headers), which python -m http.server and
// GitHub Pages do not send.
ort.env.wasm.numThreads = 1;

const SESSION_OPTIONS = { executionProviders: ["wasm"], graphOptimizationLevel: "all" };
const FORMAT = "img2latex-onnx";
const FORMAT_VERSION = 1;

async function fetched(url, as) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: ${response.status} ${response.statusText}`);
  return as === "json" ? response.json() : new Uint8Array(await response.arrayBuffer());
}

export class Model {
  constructor(manifest, vocabulary, encoder, step) {
    this.manifest = manifest;
    this.vocabulary = vocabulary;
    this.encoder = encoder;
    this.step = step;
    this.constraint = new BalanceConstraint(vocabulary);
  }

  // The export in the folder at `url` (model.json, vocab.json and the two graphs).
  static async load(url) {
    const at = (name) => new URL(name, url).href;
    const manifest = await fetched(at("model.json"), "json");
    if (manifest.format !== FORMAT || manifest.version !== FORMAT_VERSION) {
      throw new Error(`${at("model.json")} is not an ${FORMAT} export of version ${FORMAT_VERSION}`);
    }
    const [vocab, encoder, step] = await Promise.all([
      fetched(at("vocab.json"), "json"),
      fetched(at(manifest.encoder.file)).then((g) => ort.InferenceSession.create(g, SESSION_OPTIONS)),
      fetched(at(manifest.decoder_step.file))
        .then((g) => ort.InferenceSession.create(g, SESSION_OPTIONS)),
    ]);
    return new Model(manifest, vocab.tokens, encoder, step);
  }

  // The token form of the formula in a model input ({data, width} of prepareImage).
  async predict({ data, width }) {
    const m = this.manifest;
    const images = new ort.Tensor("float32", data, [1, m.input_height, width, 1]);
    const encoded = await this.encoder.run({ images });
    const memory = Object.fromEntries(m.memory.map((name) => [name, encoded[name]]));
    let state = new ort.Tensor("float32", new Float32Array(m.state_size), [1, m.state_size]);
    const step = async (token) => {
      const tokens = new ort.Tensor("int32", Int32Array.of(token), [1]);
      const out = await this.step.run({ tokens, state, ...memory }, ["log_probs", "new_state"]);
      state = out.new_state;
      return out.log_probs.data;
    };
    return decode(await greedy(step, this.constraint, m.max_len), this.vocabulary);
  }
}
