// k8s-check: offline checks of YAML files for tests/integration/test_deploy.py.
//
//   node tools/k8s-check.mjs json FILE|-        every YAML document as a JSON array
//   node tools/k8s-check.mjs validate FILE|-... each document against the
//        Kubernetes OpenAPI schema of its apiVersion/kind (kubernetes-models,
//        compiled ajv validators); prints {"documents":N,"kinds":[..],
//        "errors":[..]} and exits 1 on any error or unknown kind.
// Packages come from tools/node_modules (scripts/install-deps.sh); nothing is
// downloaded here.
import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";

function load(file) {
  const text = readFileSync(file === "-" ? 0 : file, "utf8");
  const docs = [];
  // merge: "<<" keys as Compose (YAML 1.1) reads them.
  for (const doc of parseAllDocuments(text, { merge: true })) {
    if (doc.errors.length)
      throw new Error(`${file}: ${doc.errors.map((e) => e.message).join("; ")}`);
    const value = doc.toJS();
    if (value !== null && value !== undefined)
      docs.push(value);
  }
  return docs;
}

async function modelOf(apiVersion, kind) {
  // "apps/v1" -> kubernetes-models/apps/v1/Kind, "v1" -> kubernetes-models/v1/Kind
  if (typeof apiVersion !== "string" || typeof kind !== "string"
      || !/^[A-Za-z0-9.\/-]+$/.test(apiVersion) || !/^[A-Za-z]+$/.test(kind))
    return null;
  try {
    const mod = await import(`kubernetes-models/${apiVersion}/${kind}`);
    return mod[kind] ?? null;
  } catch {
    return null;
  }
}

async function validate(files) {
  const out = { documents: 0, kinds: [], errors: [] };
  for (const file of files) {
    let docs;
    try {
      docs = load(file);
    } catch (e) {
      out.errors.push(String(e.message));
      continue;
    }
    for (const doc of docs) {
      out.documents++;
      const where = `${file}: ${doc?.kind}/${doc?.metadata?.name}`;
      out.kinds.push(`${doc?.apiVersion} ${doc?.kind}`);
      const Model = await modelOf(doc?.apiVersion, doc?.kind);
      if (!Model) {
        out.errors.push(`${where}: unknown apiVersion/kind ${doc?.apiVersion} ${doc?.kind}`);
        continue;
      }
      try {
        new Model(doc).validate();
      } catch (e) {
        out.errors.push(`${where}: ${e.message}`);
      }
    }
  }
  console.log(JSON.stringify(out));
  return out.errors.length ? 1 : 0;
}

const [cmd, ...args] = process.argv.slice(2);
if (cmd === "json" && args.length === 1) {
  console.log(JSON.stringify(load(args[0])));
} else if (cmd === "validate" && args.length > 0) {
  process.exitCode = await validate(args);
} else {
  console.error("usage: k8s-check.mjs json FILE | validate FILE...");
  process.exitCode = 64;
}
