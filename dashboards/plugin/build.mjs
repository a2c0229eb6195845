// Builds dist/ the way Grafana loads a plugin: module.js as an AMD module
// whose dependencies (react, @grafana/*) Grafana provides at run time, plus
// plugin.json, the logo and the README. A small esbuild script instead of
// @grafana/create-plugin's webpack toolchain: see docs/grafana.md.
import { build } from 'esbuild';
import { cpSync, mkdirSync, readFileSync, writeFileSync, rmSync } from 'node:fs';

const pkg = JSON.parse(readFileSync('package.json', 'utf8'));
// Grafana provides these to plugins (its SystemJS shared dependencies).
const external = ['react', 'react-dom', '@grafana/data', '@grafana/ui', '@grafana/runtime', 'rxjs', 'rxjs/operators'];
const deps = JSON.stringify(external);

rmSync('dist', { recursive: true, force: true, maxRetries: 3 });
// make plugin builds the front end first, then the backend binaries into dist/.
mkdirSync('dist/img', { recursive: true });

await build({
  entryPoints: ['src/module.ts'],
  bundle: true,
  format: 'cjs',
  platform: 'browser',
  target: ['es2020'],
  minify: true,
  sourcemap: false,
  legalComments: 'none',
  jsx: 'transform',
  jsxFactory: 'React.createElement',
  external,
  outfile: 'dist/module.js',
  // An AMD wrapper: Grafana's SystemJS loader calls define with the shared
  // modules, and the CommonJS bundle inside finds them through require.
  banner: {
    js:
      `define(${deps},function(){var __d=${deps},__a=arguments,__m={};` +
      `for(var i=0;i<__d.length;i++)__m[__d[i]]=__a[i];` +
      `var require=function(n){if(n in __m)return __m[n];throw new Error("firewatch plugin: unknown module "+n)};` +
      `var module={exports:{}},exports=module.exports;`,
  },
  footer: { js: 'return module.exports;});' },
  logLevel: 'warning',
});

const manifest = readFileSync('src/plugin.json', 'utf8')
  .replace('%VERSION%', pkg.version)
  .replace('%TODAY%', new Date().toISOString().slice(0, 10));
writeFileSync('dist/plugin.json', manifest);
cpSync('src/img', 'dist/img', { recursive: true });
cpSync('README.md', 'dist/README.md');
console.log('dist/module.js, dist/plugin.json written');
