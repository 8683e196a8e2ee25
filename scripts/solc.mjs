// Run the npm `solc` package's compile() on a standard-JSON input; also a `solc` stand-in for forge/slither.
//
// Usage: node scripts/solc.mjs --version
//        node scripts/solc.mjs --standard-json [ignored args...] < input.json > output.json
// Why not `solcjs --standard-json`: it calls process.exit() right after writing to a pipe,
// which truncates the output near 128 KiB. Here stdout is flushed before the process ends.
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';

const require = createRequire(import.meta.url);
const solc = require('solc');

const args = process.argv.slice(2);

function emit(text, code) {
  process.exitCode = code;
  // No process.exit(): node drains stdout (a pipe) before it exits by itself.
  process.stdout.write(text);
}

if (args.includes('--version')) {
  emit(`solc, the solidity compiler commandline interface\nVersion: ${solc.version()}\n`, 0);
} else if (args.includes('--standard-json')) {
  // Like native solc, read sources given by "urls" (slither/crytic-compile) and imports from
  // the working directory: compile() itself has no file system access.
  const input = JSON.parse(readFileSync(0, 'utf8'));
  for (const src of Object.values(input.sources ?? {})) {
    if (src.content === undefined && Array.isArray(src.urls) && src.urls.length > 0) {
      src.content = readFileSync(resolve(src.urls[0]), 'utf8');
      delete src.urls;
    }
  }
  const findImports = (path) => {
    try {
      return { contents: readFileSync(resolve(path), 'utf8') };
    } catch (e) {
      return { error: `cannot read ${path}: ${e.message}` };
    }
  };
  emit(solc.compile(JSON.stringify(input), { import: findImports }), 0);
} else {
  process.stderr.write('solc.mjs: only --version and --standard-json (input on stdin) are supported\n');
  process.exitCode = 2;
}
