// Loads dist/module.js as Grafana's AMD loader would, with stand-ins for
// the modules Grafana provides, and checks that it exports a data source
// plugin with a config and a query editor. Run by make plugin.
import { readFileSync } from 'node:fs';
import vm from 'node:vm';

class DataSourcePlugin {
  constructor(ds) { this.DataSourceClass = ds; }
  setConfigEditor(c) { this.ConfigEditor = c; return this; }
  setQueryEditor(q) { this.QueryEditor = q; return this; }
}
class DataSourceWithBackend { constructor(s) { this.instanceSettings = s; } }
const stubs = {
  react: { createElement: () => null },
  '@grafana/data': { DataSourcePlugin },
  '@grafana/runtime': { DataSourceWithBackend, getTemplateSrv: () => ({ replace: (s) => s }) },
  '@grafana/ui': {},
};
let exported;
const define = (deps, factory) => {
  exported = factory(...deps.map((d) => stubs[d] || {}));
};
vm.runInNewContext(readFileSync('dist/module.js', 'utf8'), { define });
const p = exported && exported.plugin;
if (!(p instanceof DataSourcePlugin) || typeof p.ConfigEditor !== 'function' || typeof p.QueryEditor !== 'function') {
  console.error('dist/module.js does not export a data source plugin with editors');
  process.exit(1);
}
const ds = new p.DataSourceClass({ id: 1 });
const q = ds.applyTemplateVariables({ refId: 'A', grid: '$grid' }, {});
if (q.grid !== '$grid' || !(ds instanceof DataSourceWithBackend)) {
  console.error('DataSource misbehaves', q);
  process.exit(1);
}
const manifest = JSON.parse(readFileSync('dist/plugin.json', 'utf8'));
if (manifest.id !== 'firewatch-api-datasource' || manifest.info.version.includes('%')) {
  console.error('dist/plugin.json is wrong', manifest.id, manifest.info.version);
  process.exit(1);
}
console.log('dist/module.js loads and exports the firewatch data source plugin');
