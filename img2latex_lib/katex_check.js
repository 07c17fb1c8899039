// KaTeX's verdict on each formula of a JSON list read from standard input: null where it
// typesets, else its error message (img2latex_lib.portable.katex_errors).
// node katex_check.js KATEX_JS DISPLAY(0|1) < formulas.json > errors.json
const katex = require(process.argv[2]);
const displayMode = process.argv[3] === "1";
let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => {
  const verdicts = JSON.parse(input).map((formula) => {
    try {
      katex.renderToString(formula, { throwOnError: true, displayMode, strict: "ignore" });
      return null;
    } catch (error) {
      return String(error.message || error);
    }
  });
  process.stdout.write(JSON.stringify(verdicts));
});
