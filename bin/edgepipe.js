#!/usr/bin/env node
// The published entry: the compiled CLI (npm install builds it through the "prepare" script).
import('../dist/cli/main.js').catch((error) => {
  if (error?.code === 'ERR_MODULE_NOT_FOUND') {
    console.error('edgepipe: dist/ is missing; run `npm run build` first.');
    process.exit(1);
  }
  throw error;
});
