// Runs the web page's modules under Node for tests/test_web.py: a JSON job on standard input,
// its result as JSON on standard output.   node harness.mjs constraint|states|preprocess|compact
import { readFileSync } from "node:fs";

import { BalanceConstraint } from "../../web/src/constraint.js";
import { prepareImage } from "../../web/src/preprocess.js";
import { greedy } from "../../web/src/search.js";
import { compact } from "../../web/src/tokens.js";

// Hex of a bit per entry, 1 where the log-probability is -Infinity (numpy's packbits order).
function ruledOut(logProbs) {
  const bytes = new Uint8Array(Math.ceil(logProbs.length / 8));
  logProbs.forEach((v, i) => { if (v === -Infinity) bytes[i >> 3] |= 0x80 >> (i & 7); });
  return Buffer.from(bytes).toString("hex");
}

const jobs = {
  // Greedy decoding of logits drawn from `bank` by `indices` (one row a sequence, one column a
  // step): the ids chosen and, for each step, which tokens the constraint ruled out.
  async constraint({ vocabulary, bank, indices, maxLen }) {
    const constraint = new BalanceConstraint(vocabulary);
    const results = [];
    for (const row of indices) {
      const steps = [];
      const ids = await greedy(async () => {
        steps.push(Float32Array.from(bank[row[steps.length]]));
        return steps.at(-1);
      }, constraint, maxLen);
      results.push({ ids, ruledOut: steps.map(ruledOut) });
    }
    return results;
  },
  // The state after each case's prefix, and which tokens are ruled out next when the model
  // would write `wants` with `room` tokens left.
  async states({ vocabulary, cases }) {
    const constraint = new BalanceConstraint(vocabulary);
    return cases.map(({ prefix, wants, room }) => {
      const opened = prefix.reduce((state, token) => constraint.update(state, token),
        constraint.nothingOpen());
      const logits = new Float32Array(vocabulary.length);
      logits[wants] = 1;
      const blocked = constraint.blocked(opened, logits, room);
      const masked = Float32Array.from(blocked, (b) => (b ? -Infinity : 0));
      return { opened: [...opened], ruledOut: ruledOut(masked) };
    });
  },
  // Model inputs of raw RGBA files: their width and float32 pixels (base64).
  async preprocess({ model, images }) {
    return images.map(({ path, width, height }) => {
      try {
        const { data, width: padded } = prepareImage(readFileSync(path), width, height, model);
        return { width: padded, data: Buffer.from(data.buffer).toString("base64") };
      } catch (error) {
        return { error: error.message };
      }
    });
  },
  async compact({ formulas }) {
    return formulas.map(compact);
  },
};

const input = JSON.parse(readFileSync(0, "utf8"));
process.stdout.write(JSON.stringify(await jobs[process.argv[2]](input)));
