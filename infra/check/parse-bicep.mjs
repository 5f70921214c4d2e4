#!/usr/bin/env node
// Parses Bicep files with a real grammar (tree-sitter-bicep's WebAssembly build, run by web-tree-sitter;
// both are devDependencies in the repository's package.json) and reports every ERROR or MISSING node as
// file:line:col. It is a syntax check only: names, types and API versions are the Bicep compiler's job
// (`bicep build` / `bicep lint`), which scripts/packaging_test.go runs when a Bicep CLI is on PATH.
//
//   node infra/check/parse-bicep.mjs              every .bicep file under infra/
//   node infra/check/parse-bicep.mjs FILE|DIR...  the given files, or every .bicep file under DIR
//   --no-mask                                     parse the text as it is (see below)
//
// Exit status: 0 no syntax errors; 1 syntax errors (one line each on stderr); 2 usage or setup error
// (for example the parser is not installed: run `npm ci` in the repository root).
//
// Known grammar bug, worked around here: tree-sitter-bicep 1.1.0 lexes `//` inside some string literals
// (for example the `'//'` in `split(endpoint, '//')`, or `'a//b'` as a call argument) as the start of a
// comment, and then reports ERROR or MISSING nodes. Before parsing, the contents of every string literal (outside `${...}`
// interpolations) are replaced with `x`, and non-ASCII characters in strings and comments likewise; the
// replacement keeps every offset, so line and column still point into the original file. Errors inside
// string contents are therefore not seen by this check (the Bicep compiler sees them).

import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative, resolve, dirname } from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const infraDir = resolve(here, '..');

// mask returns src with string contents and non-ASCII comment characters replaced by 'x' (newlines kept),
// so that the result has the same length and the same line breaks as src.
export function mask(src) {
  const out = src.split('');
  const hide = (i) => {
    if (out[i] !== '\n' && out[i] !== '\r') out[i] = 'x';
  };
  // Each frame is 'code' (with the depth of braces opened inside it) or 'string'.
  const stack = [{ mode: 'code', depth: 0 }];
  let i = 0;
  while (i < src.length) {
    const top = stack[stack.length - 1];
    const c = src[i];
    if (top.mode === 'code') {
      if (src.startsWith('//', i)) {
        while (i < src.length && src[i] !== '\n') {
          if (src.charCodeAt(i) > 0x7f) hide(i);
          i++;
        }
      } else if (src.startsWith('/*', i)) {
        const end = src.indexOf('*/', i + 2);
        const stop = end < 0 ? src.length : end + 2;
        for (; i < stop; i++) if (src.charCodeAt(i) > 0x7f) hide(i);
      } else if (src.startsWith("'''", i)) {
        // Multi-line string: no escapes and no interpolation.
        const end = src.indexOf("'''", i + 3);
        const stop = end < 0 ? src.length : end;
        for (i += 3; i < stop; i++) hide(i);
        i = end < 0 ? src.length : end + 3;
      } else if (c === "'") {
        stack.push({ mode: 'string' });
        i++;
      } else if (c === '{') {
        top.depth++;
        i++;
      } else if (c === '}' && top.depth === 0 && stack.length > 1) {
        stack.pop(); // end of ${...}: back in the string
        i++;
      } else {
        if (c === '}') top.depth--;
        i++;
      }
    } else {
      if (c === '\\') {
        hide(i);
        if (i + 1 < src.length) hide(i + 1);
        i += 2;
      } else if (c === "'") {
        stack.pop();
        i++;
      } else if (src.startsWith('${', i)) {
        stack.push({ mode: 'code', depth: 0 });
        i += 2;
      } else if (c === '\n') {
        stack.pop(); // an unterminated string; the parser reports it
        i++;
      } else {
        hide(i);
        i++;
      }
    }
  }
  return out.join('');
}

function bicepFiles(target, found) {
  const st = statSync(target);
  if (st.isFile()) {
    found.push(target);
    return;
  }
  for (const name of readdirSync(target).sort()) {
    if (name === 'node_modules' || name.startsWith('.')) continue;
    const p = join(target, name);
    if (statSync(p).isDirectory()) bicepFiles(p, found);
    else if (name.endsWith('.bicep')) found.push(p);
  }
}

function position(text, index) {
  let line = 1;
  let lineStart = 0;
  for (let i = 0; i < index && i < text.length; i++) {
    if (text[i] === '\n') {
      line++;
      lineStart = i + 1;
    }
  }
  return { line, col: index - lineStart + 1 };
}

// problems returns one entry per ERROR or MISSING node, outermost first, without repeats.
function problems(tree, src) {
  const found = [];
  const seen = new Set();
  const walk = (node) => {
    if (node.isMissing || node.isError) {
      const { line, col } = position(src, node.startIndex);
      const key = `${line}:${col}:${node.isMissing ? node.type : 'ERROR'}`;
      if (!seen.has(key)) {
        seen.add(key);
        const near = src.slice(node.startIndex, Math.min(node.endIndex, node.startIndex + 40)).split('\n')[0];
        found.push({
          line,
          col,
          what: node.isMissing ? `missing ${JSON.stringify(node.type)}` : `syntax error near ${JSON.stringify(near)}`,
        });
      }
    }
    if (node.hasError || node.isMissing) {
      for (const child of node.children) walk(child);
    }
  };
  walk(tree.rootNode);
  return found;
}

async function main(argv) {
  let doMask = true;
  const targets = [];
  for (const a of argv) {
    if (a === '--no-mask') doMask = false;
    else if (a === '-h' || a === '--help') {
      console.log('usage: node infra/check/parse-bicep.mjs [--no-mask] [FILE|DIR ...]  (default: infra/)');
      return 0;
    } else if (a.startsWith('-')) {
      console.error(`parse-bicep: unknown option ${a}`);
      return 2;
    } else targets.push(resolve(a));
  }
  if (targets.length === 0) targets.push(infraDir);

  const require = createRequire(import.meta.url);
  let Parser, Language, grammarPath;
  try {
    ({ Parser, Language } = await import('web-tree-sitter'));
    grammarPath = require.resolve('tree-sitter-bicep/tree-sitter-bicep.wasm');
  } catch (err) {
    console.error(`parse-bicep: the Bicep parser is not installed (${err.code || err.message}); run \`npm ci\` in the repository root`);
    return 2;
  }
  await Parser.init();
  const parser = new Parser();
  parser.setLanguage(await Language.load(grammarPath));

  const files = [];
  try {
    for (const t of targets) bicepFiles(t, files);
  } catch (err) {
    console.error(`parse-bicep: ${err.message}`);
    return 2;
  }
  if (files.length === 0) {
    console.error(`parse-bicep: no .bicep files in ${targets.join(', ')}`);
    return 2;
  }

  let count = 0;
  for (const file of files) {
    const src = readFileSync(file, 'utf8');
    const tree = parser.parse(doMask ? mask(src) : src);
    const name = relative(process.cwd(), file) || file;
    for (const p of problems(tree, src)) {
      console.error(`${name}:${p.line}:${p.col}: ${p.what}`);
      count++;
    }
    tree.delete();
  }
  if (count > 0) {
    console.error(`parse-bicep: ${count} syntax error(s) in ${files.length} file(s)`);
    return 1;
  }
  console.log(`parse-bicep: ${files.length} file(s) parsed, no syntax errors (tree-sitter-bicep${doMask ? ', string contents masked' : ''})`);
  return 0;
}

// Run only when executed as a script (importing the module, e.g. for mask, runs nothing).
if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = await main(process.argv.slice(2));
}
