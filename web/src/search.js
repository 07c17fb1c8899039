// Greedy decoding of one formula under the balance constraint, as img2latex_lib/search.py's
// greedy() decodes each row of a batch.

import { argmax } from "./constraint.js";
import { EOS_ID, SOS_ID } from "./tokens.js";

// The token ids of the most likely formula (without <eos>). `step(token)` resolves to the
// decoder's log-probabilities of the next token (a Float32Array; its ruled-out entries are
// set to -Infinity in place); `constraint` may be null.
export async function greedy(step, constraint, maxLen) {
  const ids = [];
  let opened = constraint?.nothingOpen();
  let token = SOS_ID;
  for (let position = 0; position <= maxLen; position++) {
    const logProbs = await step(token);
    const room = maxLen - position;
    if (constraint) {
      const blocked = constraint.blocked(opened, logProbs, room);
      blocked.forEach((out, v) => { if (out) logProbs[v] = -Infinity; });
    }
    if (room === 0) logProbs.forEach((_, v) => { logProbs[v] = v === EOS_ID ? 0 : -Infinity; });
    token = argmax(logProbs);
    if (constraint) opened = constraint.update(opened, token);
    if (token === EOS_ID) break;
    ids.push(token);
  }
  return ids;
}
