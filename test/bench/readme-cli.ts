/** `npm run bench -- readme`: rewrites README.md's benchmark blocks from test/bench/results. */
import { readFileSync, writeFileSync } from "node:fs";
import { generatedBlocks, withBlocks } from "./readme.js";

const before = readFileSync("README.md", "utf8");
const after = withBlocks(before, generatedBlocks());
if (after === before) console.log("README.md: the benchmark figures are up to date");
else {
  writeFileSync("README.md", after);
  console.log("README.md: benchmark figures rewritten from test/bench/results");
}
