/** `npm run bench -- charts [FILE.json ...]`: draws the given results files, or all of test/bench/results. */
import { renderFile, resultsFiles } from "./charts.js";

const args = process.argv.slice(2).filter((a) => a !== "--");
const targets = args.length > 0 ? args : resultsFiles();
let failed = 0;
for (const file of targets) {
  try {
    console.log(`wrote ${await renderFile(file)}`);
  } catch (err) {
    failed++;
    console.error(`charts: ${(err as Error).message}`);
  }
}
if (failed > 0) process.exit(1);
