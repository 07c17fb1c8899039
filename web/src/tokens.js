// Token ids to LaTeX: the special ids, Vocab.decode, the tokenizer and formats.compact of
// img2latex_lib, ported.

export const PAD_ID = 0;
export const SOS_ID = 1;
export const EOS_ID = 2;
const UNK = "<unk>";

const DELIMITER = String.raw`(?:\\[a-zA-Z]+|\\[^a-zA-Z\s]|[^\s\\{}])`;
const TOKEN = new RegExp(
  String.raw`\\(?:left|right)(?![a-zA-Z])\s*` + DELIMITER // \left( \right\} \left.
    + String.raw`|\\(?:begin|end)\s*\{\s*[a-zA-Z]+\*?\s*\}` // \begin{array}
    + String.raw`|\\[a-zA-Z]+\*|\\[a-zA-Z]+|\\[^a-zA-Z\s]` // \operatorname* \frac \{
    + String.raw`|\\(?=\s|$)|-{2,3}|\S`, // control space, -- ---, any other character
  "gu",
);

// The im2latex tokens of a LaTeX string (tokenizer.tokenize).
export function tokenize(latex) {
  return [...latex.matchAll(TOKEN)].map((match) => match[0].replace(/\s+/gu, ""));
}

// The space-joined tokens of ids up to the first <eos>, <pad> and <sos> skipped (Vocab.decode).
export function decode(ids, vocabulary) {
  const tokens = [];
  for (const id of ids) {
    if (id === EOS_ID) break;
    if (id !== PAD_ID && id !== SOS_ID) tokens.push(vocabulary[id] ?? UNK);
  }
  return tokens.join(" ");
}

function needsSpace(left, right) {
  const apart = [...tokenize(left), ...tokenize(right)];
  const together = tokenize(left + right);
  return together.length !== apart.length || together.some((token, i) => token !== apart[i]);
}

// The token form without the spaces TeX does not need: \frac { a } { b } -> \frac{a}{b},
// \alpha x stays (formats.compact).
export function compact(formula) {
  const pieces = formula.split(/\s+/u).filter(Boolean);
  return pieces.map((piece, i) => (i && needsSpace(pieces[i - 1], piece) ? " " : "") + piece)
    .join("");
}
