// Build the JupyterLab 4 prebuilt (federated) extension into ../llmroof_widgets/labextension/.
//
// Run by the root `npm run build` (so by `pip install [-e] .` through hatch-jupyter-builder) and
// by `npm run build` here. Steps:
//   1. install the build tool (@jupyterlab/builder: webpack + module federation) into
//      builder/node_modules when it is missing or older than builder/package.json. The JupyterLab
//      packages the extension imports are shared singletons that JupyterLab provides at run time,
//      so they are not installed (that keeps the install at ~60 MB instead of ~380 MB);
//   2. find JupyterLab's "core path" (<site-packages>/jupyterlab/staging, whose package.json lists
//      the shared package versions) in the Python that runs the build: pip's isolated build
//      environment has jupyterlab from [build-system].requires; see findCorePath();
//   3. run `build-labextension --core-path <core> .` (`jupyter labextension build` needs the
//      separate jupyter-builder package in JupyterLab 4.6; this does not);
//   4. add install.json (how `jupyter labextension list` says the package was installed) and stamp
//      the built package.json with the Python package's version (llmroof_widgets/__init__.py is the
//      one version source; the version fields of the JS package.json files are placeholders).
//
// Options: --development (unminified, source maps). Environment: LLMROOF_JUPYTERLAB_CORE_PATH
// (a folder holding JupyterLab's staging package.json) skips the Python lookup.
import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { delimiter, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "..");
const builderDir = join(here, "builder");
const isWin = process.platform === "win32";
const bin = join(builderDir, "node_modules", ".bin", isWin ? "build-labextension.cmd" : "build-labextension");
const pkg = JSON.parse(readFileSync(join(here, "package.json"), "utf8"));
const outDir = resolve(here, pkg.jupyterlab.outputDir);

function log(msg) {
  console.log(`build_labextension: ${msg}`);
}

function fail(msg) {
  console.error(`build_labextension: ${msg}`);
  process.exit(1);
}

function run(cmd, args, cwd) {
  const r = spawnSync(cmd, args, { cwd, stdio: "inherit", shell: isWin });
  if (r.error) fail(`${cmd} could not start: ${r.error.message}`);
  if (r.status !== 0) fail(`${cmd} ${args.join(" ")} failed (exit ${r.status})`);
}

function mtime(p) {
  try {
    return statSync(p).mtimeMs;
  } catch {
    return -1;
  }
}

// 1. the build tool
const stamp = join(builderDir, "node_modules", ".package-lock.json");
if (!existsSync(bin) || mtime(stamp) < mtime(join(builderDir, "package.json"))) {
  const npm = process.env.npm_execpath && process.env.npm_execpath.endsWith(".js")
    ? [process.execPath, [process.env.npm_execpath]]
    : [isWin ? "npm.cmd" : "npm", []];
  const mode = existsSync(join(builderDir, "package-lock.json")) ? "ci" : "install";
  log(`npm ${mode} in ${builderDir} (@jupyterlab/builder)`);
  run(npm[0], [...npm[1], mode, "--no-audit", "--no-fund"], builderDir);
}

// 2. JupyterLab's core path
function interpreterOf(script) {
  // the Python a console script runs with: `#!/path/python`, or pip's long-path form
  // `#!/bin/sh` + `'''exec' "/path/python" "$0" "$@"`
  let head;
  try {
    head = readFileSync(script, "utf8").slice(0, 1024).split("\n");
  } catch {
    return null;
  }
  if (!head[0].startsWith("#!")) return null;
  const m = /^'''exec' "?([^"\s]+)"?/.exec(head[1] || "");
  if (m) return m[1];
  const interp = head[0].slice(2).trim().split(/\s+/)[0];
  return interp.endsWith("/sh") || interp.endsWith("/env") ? null : interp;
}

function pythonCandidates() {
  const out = [];
  if (process.env.PYTHON) out.push(process.env.PYTHON);
  // console scripts of jupyterlab on PATH: in pip's isolated build environment the first ones are
  // the build environment's (their interpreter sees its site-packages through pip's PYTHONPATH)
  for (const dir of (process.env.PATH || "").split(delimiter)) {
    for (const name of ["jupyter-lab", "jupyter-labextension"]) {
      const interp = interpreterOf(join(dir, name));
      if (interp) out.push(interp);
    }
  }
  out.push(join(root, ".venv", "bin", "python"), "python3", "python");
  return [...new Set(out)];
}

function findCorePath() {
  const given = process.env.LLMROOF_JUPYTERLAB_CORE_PATH;
  if (given) {
    if (!existsSync(join(given, "package.json"))) fail(`LLMROOF_JUPYTERLAB_CORE_PATH=${given} holds no package.json`);
    return given;
  }
  const code = "import os, jupyterlab; print(os.path.join(os.path.dirname(jupyterlab.__file__), 'staging'))";
  for (const py of pythonCandidates()) {
    const r = spawnSync(py, ["-c", code], { encoding: "utf8" });
    if (r.status !== 0 || !r.stdout) continue;
    const dir = r.stdout.trim().split("\n").pop();
    if (existsSync(join(dir, "package.json"))) {
      log(`JupyterLab core path ${dir} (from ${py})`);
      return dir;
    }
  }
  fail(
    "JupyterLab 4 was not found in any Python on PATH. It is a build requirement " +
      "(pyproject.toml [build-system].requires); to build by hand, `pip install 'jupyterlab>=4,<5'` " +
      "or set LLMROOF_JUPYTERLAB_CORE_PATH to <site-packages>/jupyterlab/staging.",
  );
}

// 3. build
const core = findCorePath();
const args = ["--core-path", core];
if (process.argv.includes("--development")) args.push("--development");
run(bin, [...args, "."], here);

// 4. install.json (the builder empties the output folder first, so it goes in afterwards)
copyFileSync(join(here, "install.json"), join(outDir, "install.json"));
const built = JSON.parse(readFileSync(join(outDir, "package.json"), "utf8"));
const pyInit = readFileSync(join(root, "llmroof_widgets", "__init__.py"), "utf8");
const ver = /^__version__\s*=\s*["']([^"']+)["']/m.exec(pyInit);
if (!ver) fail("no __version__ in llmroof_widgets/__init__.py");
// npm versions are semver: a PEP 440 pre-release "0.2.0a1" becomes "0.2.0-a1"
built.version = ver[1].replace(/^(\d+\.\d+\.\d+)([a-z].*)$/, "$1-$2");
writeFileSync(join(outDir, "package.json"), JSON.stringify(built, null, 2) + "\n");
log(`built ${built.name} ${built.version} -> ${outDir} (${built.jupyterlab._build.load})`);
