// Renders a saved analysis with the Lab viewer (labextension/src/viewer.js) on a minimal DOM, in node:
// how long it takes, how many nodes it makes, and the tags of the title's children.
// Usage: node tests/hostile_viewer.mjs <repo root> <analysis.json>   (used by tests/test_hostile.py)
const [, , root, dataPath] = process.argv;
const esbuild = await import(`${root}/node_modules/esbuild/lib/main.js`);
const fs = await import('node:fs');
const out = await esbuild.build({
  entryPoints: [`${root}/labextension/src/viewer.js`],
  bundle: true,
  write: false,
  format: 'esm',
  platform: 'neutral',
  logLevel: 'silent',
  plugins: [
    {
      name: 'lumino-stub', // the viewer's document widget needs Lumino; the rendering does not
      setup(b) {
        b.onResolve({ filter: /^@lumino\/widgets$/ }, a => ({ path: a.path, namespace: 'stub' }));
        b.onLoad({ filter: /.*/, namespace: 'stub' }, () => ({ contents: 'export class Widget {}', loader: 'js' }));
      }
    }
  ]
});
const count = { n: 0 };
class FakeNode {
  constructor(tag) {
    this.tag = tag;
    this.children = [];
    this.attrs = {};
    this.dataset = {};
    this.text = '';
    this.style = { setProperty: () => {} };
    this.classList = { toggle: () => {}, add: () => {} };
  }
  replaceChildren(...c) {
    this.children = c;
  }
  appendChild(c) {
    this.children.push(c);
    if (++count.n > 200000) throw new Error('more than 200000 nodes');
    return c;
  }
  setAttribute(k, v) {
    this.attrs[k] = v;
  }
  addEventListener() {}
}
globalThis.document = {
  createElement: t => new FakeNode(t),
  createElementNS: (ns, t) => new FakeNode(t),
  createTextNode: t => Object.assign(new FakeNode('#text'), { text: t })
};
const mod = await import('data:text/javascript;base64,' + Buffer.from(out.outputFiles[0].text).toString('base64'));
const d = JSON.parse(fs.readFileSync(dataPath, 'utf8'));
const t0 = performance.now();
const node = mod.renderAnalysis(d);
const ms = performance.now() - t0;
let title = null;
(function walk(n) {
  if (!title && /lr-doc-title/.test(n.attrs.class || '')) title = n;
  n.children.forEach(walk);
})(node);
console.log(JSON.stringify({ ms, nodes: count.n, title: title ? title.children.map(c => c.tag) : [] }));
