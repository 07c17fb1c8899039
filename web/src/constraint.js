// The balance constraint on decoding, ported from img2latex_lib/constraints.py for one formula
// at a time: the same stack of what is open, packed the same way, and the same rules on what
// may come next (see BalanceConstraint there). tests/test_web.py holds the two to the same
// choices.

import { EOS_ID, PAD_ID } from "./tokens.js";

const ROW_ENDS = ["\\\\", "\\cr"];
const COLUMN_LETTERS = ["c", "l", "r", "p"];
const SPEC_MARKS = ["|", "@", "*"];
const SPEC_ARGUMENTS = { p: 1, "@": 1, "*": 2 };
const LIMIT = 64; // tabs and columns counted per array, at most
const SUP = 1;
const SUB = 2;
const WAITING = 4;

// [kind, +1 opens / -1 closes] of a token that must be balanced, else null.
function balanceKind(token) {
  if (token === "{" || token === "}") return ["{", token === "{" ? 1 : -1];
  for (const [prefix, delta] of [["\\left", 1], ["\\right", -1]]) {
    const rest = token.slice(prefix.length);
    if (token.startsWith(prefix) && (!rest || !/^\p{L}/u.test(rest))) return ["\\left", delta];
  }
  for (const [prefix, delta] of [["\\begin", 1], ["\\end", -1]]) {
    const rest = token.slice(prefix.length);
    if (token.startsWith(prefix) && (!rest || rest.startsWith("{"))) {
      return ["\\begin" + rest, delta];
    }
  }
  return null;
}

const bit = (script, b) => Math.floor(script / b) % 2 > 0;

// Sorted as Python sorts strings (by code point).
const byCodePoint = (a, b) => {
  const [x, y] = [[...a].map((c) => c.codePointAt(0)), [...b].map((c) => c.codePointAt(0))];
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
};

export class BalanceConstraint {
  // vocabulary: the token strings in id order (vocab.json's "tokens").
  constructor(vocabulary, depth = 32) {
    const found = vocabulary.map(balanceKind);
    const names = new Set(found.filter(Boolean).map(([kind]) => kind));
    this.kinds = ["", ...[...names].sort(byCodePoint)];
    const ids = new Map(this.kinds.map((kind, k) => [kind, k]));
    this.opens = Int32Array.from(found, (f) => (f && f[1] === 1 ? ids.get(f[0]) : 0));
    this.closes = Int32Array.from(found, (f) => (f && f[1] === -1 ? ids.get(f[0]) : 0));
    this.brace = ids.get("{") ?? -1;
    this.array = ids.get("\\begin{array}") ?? -1;
    this.environment = this.kinds.map((kind) => kind.startsWith("\\begin"));
    const marks = (tokens) => Uint8Array.from(vocabulary, (t) => (tokens.includes(t) ? 1 : 0));
    this.tab = marks(["&"]);
    this.rowEnd = marks(ROW_ENDS);
    this.column = marks(COLUMN_LETTERS);
    this.sup = marks(["^"]);
    this.sub = marks(["_"]);
    this.prime = marks(["'"]);
    this.spec = marks([...COLUMN_LETTERS, ...SPEC_MARKS]);
    this.arguments = Int32Array.from(vocabulary, (t) => SPEC_ARGUMENTS[t] ?? 0);
    this.depth = depth;
    const k = this.kinds.length;
    this.units = { phase: k, tabs: 3 * k, columns: 3 * k * LIMIT, script: 3 * k * LIMIT * LIMIT };
  }

  // The state before the first token: [count open, top level, one value per open thing].
  nothingOpen() {
    return new Int32Array(this.depth + 2);
  }

  // {kind, phase, tabs, columns, script} of a packed stack value.
  fields(value) {
    const u = this.units;
    return {
      kind: value % u.phase,
      phase: Math.floor(value / u.phase) % 3,
      tabs: Math.floor(value / u.tabs) % LIMIT,
      columns: Math.floor(value / u.columns) % LIMIT,
      script: Math.floor(value / u.script),
    };
  }

  // The innermost group's script bits after `token` (a prime keeps the atom: x'^2).
  scriptAfter(script, token) {
    const waiting = bit(script, WAITING);
    const kept = script - (waiting ? WAITING : 0);
    if (this.prime[token]) return kept;
    if (this.sup[token]) return script | SUP | WAITING;
    if (this.sub[token]) return script | SUB | WAITING;
    return waiting ? kept : 0;
  }

  // Whether a spec token's brace groups may open, and (with room) close in time: the token, a
  // { and a } per group, and a closer per open thing.
  groupsFit(count, groups, room) {
    return count < this.depth && (room === null || count + 1 + 2 * groups <= room);
  }

  // A new state: `opened` after `token`.
  update(opened, token) {
    const u = this.units;
    const kind = this.opens[token];
    const closed = this.closes[token] > 0;
    const count = opened[0];
    let top = opened[count + 1];
    let below = opened[count];
    const t = this.fields(top);
    const b = this.fields(below);
    const arrayTop = t.kind === this.array;
    if (arrayTop && t.phase === 0) top += u.phase * (kind === this.brace ? 1 : 2);
    if (arrayTop && t.phase === 2) {
      if (this.tab[token] && t.tabs < LIMIT - 1) top += u.tabs;
      else if (this.rowEnd[token]) top -= u.tabs * t.tabs;
    }
    const script = token === PAD_ID ? t.script : this.scriptAfter(t.script, token);
    top += u.script * (script - t.script);
    if (t.kind === this.brace && b.kind === this.array && b.phase === 1) { // in an array's spec
      if (this.column[token] && b.columns < LIMIT - 1) below += u.columns;
      if (closed) below += u.phase; // spec read
      // while the spec is read, its tabs field holds the brace groups its last token still takes
      let waiting = kind === this.brace ? Math.max(b.tabs - 1, 0) : this.arguments[token];
      if (token === PAD_ID) waiting = b.tabs;
      below += u.tabs * (waiting - b.tabs);
    }
    const next = opened.slice();
    next[count + 1] = top;
    if (count > 1) next[count] = below;
    if (kind > 0 && count + 2 < next.length) next[count + 2] = kind;
    next[0] = Math.max(count + (kind > 0 ? 1 : 0) - (closed ? 1 : 0), 0);
    return next;
  }

  // Per token, 1 where it is ruled out after `opened` when the model scores the next token
  // with `logits`; `room`: how many tokens may still come before <eos> (null: no limit).
  blocked(opened, logits, room = null) {
    const count = opened[0];
    const { kind: innermost, phase, tabs, columns, script } = this.fields(opened[count + 1]);
    const stillOpen = count > 0;
    const waiting = bit(script, WAITING);
    let closingTime = stillOpen && argmax(logits) === EOS_ID && !waiting;
    if (room !== null && stillOpen && count >= room) closingTime = true;
    const outside = !this.environment[innermost];
    const rowFull = innermost === this.array && phase === 2 && columns > 0 && tabs >= columns - 1;
    const supTaken = waiting || bit(script, SUP);
    const subTaken = waiting || bit(script, SUB);
    const primeTaken = bit(script, SUP);
    const below = this.fields(opened[count]);
    const inSpec = innermost === this.brace && below.kind === this.array && below.phase === 1;
    const groupOnly = inSpec && below.tabs > 0; // a spec token waiting for its brace group
    const out = new Uint8Array(this.opens.length);
    for (let v = 0; v < out.length; v++) {
      if (groupOnly) {
        out[v] = this.opens[v] === this.brace ? 0 : 1;
        continue;
      }
      const closes = this.closes[v] > 0;
      const closesInnermost = closes && this.closes[v] === innermost;
      const opens = this.opens[v] > 0;
      const isEos = v === EOS_ID;
      const tabOrRow = this.tab[v] || this.rowEnd[v];
      const grows = opens || this.sup[v] || this.sub[v];
      out[v] = (closes && !closesInnermost)
        || (stillOpen && isEos)
        || (opens && count >= this.depth)
        || (waiting && (closes || isEos || tabOrRow))
        || (room !== null && grows && count + 2 > room)
        || (closingTime && !closesInnermost)
        || (outside && tabOrRow)
        || (rowFull && this.tab[v])
        || (this.sup[v] && supTaken) || (this.sub[v] && subTaken)
        || (this.prime[v] && primeTaken)
        || (inSpec && !(this.spec[v] || closes))
        || (inSpec && this.arguments[v] > 0 && !this.groupsFit(count, this.arguments[v], room))
        ? 1 : 0;
    }
    return out;
  }
}

// Index of the largest value (the first, on a tie), as numpy's argmax.
export function argmax(values) {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}
