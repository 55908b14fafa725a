// Copy the two scripts a static HTML export inlines (llmroof_widgets/export.py) from node_modules
// into llmroof_widgets/static/embed/: require.js and @jupyter-widgets/html-manager's embed-amd.js
// (which also defines @jupyter-widgets/base and controls), plus the Font Awesome webfonts its CSS
// uses (the accordion and toolbar icons; inlined as data URLs) and the widget state schemas. Run by `npm run build`.
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const out = join(root, "llmroof_widgets", "static", "embed");
const assets = [
  ["@jupyter-widgets/html-manager", "dist/embed-amd.js", "embed-amd.js"],
  ["requirejs", "require.js", "require.js"],
];

mkdirSync(out, { recursive: true });
const versions = {};
for (const [pkg, file, target] of assets) {
  const dir = join(root, "node_modules", ...pkg.split("/"));
  const src = join(dir, file);
  if (!existsSync(src)) {
    console.error(`copy_embed_assets: ${src} is missing; run \`npm install\` first`);
    process.exit(1);
  }
  copyFileSync(src, join(out, target));
  const meta = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
  versions[target] = { package: pkg, version: meta.version, license: meta.license };
}
// the JSON schemas of the widget state and view specs html-manager bundles (@jupyter-widgets/schema v2):
// export.py checks every exported state against them (the page itself skips that check)
{
  const req = createRequire(join(root, "node_modules", "@jupyter-widgets", "html-manager", "package.json"));
  const pkg = dirname(req.resolve("@jupyter-widgets/schema/package.json"));
  for (const name of ["state", "view"]) {
    copyFileSync(join(pkg, "v2", `${name}.schema.json`), join(out, `${name}.schema.json`));
  }
  const meta = JSON.parse(readFileSync(join(pkg, "package.json"), "utf8"));
  versions["schemas"] = { package: "@jupyter-widgets/schema", version: meta.version, license: meta.license };
}
// Font Awesome 5 (a dependency of html-manager): optional, the page only loses icons without it
try {
  const req = createRequire(join(root, "node_modules", "@jupyter-widgets", "html-manager", "package.json"));
  for (const font of ["fa-solid-900.woff2", "fa-regular-400.woff2"]) {
    copyFileSync(req.resolve(`@fortawesome/fontawesome-free/webfonts/${font}`), join(out, font));
  }
  const meta = JSON.parse(readFileSync(req.resolve("@fortawesome/fontawesome-free/package.json"), "utf8"));
  versions["webfonts"] = { package: "@fortawesome/fontawesome-free", version: meta.version, license: "OFL-1.1 (fonts)" };
} catch (e) {
  console.warn(`copy_embed_assets: Font Awesome webfonts not found (${e.message}); exports will lack icons`);
}
writeFileSync(join(out, "versions.json"), JSON.stringify(versions, null, 2) + "\n");
console.log(`copy_embed_assets: ${Object.keys(versions).join(", ")} -> ${out}`);
