// The page: an image comes in (paste, drop, file input), its LaTeX goes out (text box, copy
// button, KaTeX rendering), with the model's load time and each prediction's time.

import katex from "../katex/katex.mjs";

import { decodeImage } from "./image.js";
import { Model } from "./model.js";
import { prepareImage } from "./preprocess.js";
import { compact } from "./tokens.js";

const $ = (id) => document.getElementById(id);
const status = $("status");
const seconds = (ms) => `${(ms / 1000).toFixed(2)} s`;
let predictions = 0;
let queue = Promise.resolve();

function show(state, message) {
  status.dataset.state = state;
  status.textContent = message;
}

async function predict(model, blob, name) {
  show("predicting", `${name}: predicting…`);
  URL.revokeObjectURL($("preview").src);
  $("preview").src = URL.createObjectURL(blob);
  $("preview").hidden = false;
  const start = performance.now();
  try {
    const image = await decodeImage(blob);
    const tokens = await model.predict(prepareImage(image.data, image.width, image.height,
      model.manifest));
    const latex = compact(tokens);
    const took = performance.now() - start;
    $("latex").value = latex;
    $("latex").dataset.tokens = tokens;
    $("copy").disabled = !latex;
    katex.render(latex, $("rendered"), { displayMode: true, throwOnError: false });
    $("prediction-time").textContent = `Predicted in ${seconds(took)}.`;
    $("prediction-time").dataset.ms = took.toFixed(1);
    show("done", `${name}: ${tokens.split(" ").filter(Boolean).length} tokens.`);
  } catch (error) {
    $("latex").value = "";
    delete $("latex").dataset.tokens;
    $("rendered").textContent = "";
    $("copy").disabled = true;
    $("prediction-time").textContent = "";
    show("error", `${name}: ${error.message}`);
  }
  status.dataset.predictions = ++predictions;
}

function accept(model, file, name) {
  if (file) queue = queue.then(() => predict(model, file, name || file.name || "image"));
}

function wire(model) {
  $("file").addEventListener("change", (event) => {
    accept(model, event.target.files[0]);
    event.target.value = ""; // the same file chosen again predicts again
  });
  document.addEventListener("paste", (event) => {
    const item = [...event.clipboardData.items].find((i) => i.type.startsWith("image/"));
    if (item) {
      event.preventDefault();
      accept(model, item.getAsFile(), "pasted image");
    }
  });
  const drop = $("drop"); // shows where to drop; the whole page takes the file
  for (const type of ["dragenter", "dragover"]) {
    document.addEventListener(type, (event) => {
      event.preventDefault();
      drop.classList.add("over");
    });
  }
  document.addEventListener("dragleave", (event) => {
    if (!event.relatedTarget) drop.classList.remove("over"); // left the window
  });
  document.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    accept(model, event.dataTransfer.files[0]);
  });
  $("copy").addEventListener("click", async () => {
    await navigator.clipboard.writeText($("latex").value);
    $("copy").textContent = "Copied";
    setTimeout(() => { $("copy").textContent = "Copy"; }, 1500);
  });
}

async function main() {
  const start = performance.now();
  let model;
  try {
    model = await Model.load(new URL("model/", document.baseURI));
  } catch (error) {
    show("error", `The model did not load: ${error.message}`);
    return;
  }
  const took = performance.now() - start;
  $("load-time").textContent = `Model loaded in ${seconds(took)}.`;
  $("load-time").dataset.ms = took.toFixed(1);
  wire(model);
  show("ready", "Ready: paste, drop or choose an image of a formula.");
}

main();
