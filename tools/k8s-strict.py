#!/usr/bin/python3
"""k8s-strict: unknown-field check of Kubernetes manifests, which the schema
check of tools/k8s-check.mjs does not do (Kubernetes' OpenAPI schemas allow
extra properties, so a misspelt `readinesProbe` would pass there).

    node tools/k8s-check.mjs json FILE | /usr/bin/python3 tools/k8s-strict.py

Walks every document along the typed models of Debian's python3-kubernetes
(openapi_types / attribute_map of each model class) and prints one line per
field that its type does not have; exit 1 if there is any. Offline.
"""
import json
import re
import sys

from kubernetes import client


def model_name(api_version, kind):
    version = api_version.split("/")[-1]
    return version[:1].upper() + version[1:] + kind


def walk(value, type_name, path, out):
    if value is None:
        return
    m = re.fullmatch(r"list\[(.+)\]", type_name)
    if m:
        if isinstance(value, list):
            for i, item in enumerate(value):
                walk(item, m.group(1), f"{path}[{i}]", out)
        else:
            out.append(f"{path}: expected a list")
        return
    m = re.fullmatch(r"dict\(str, (.+)\)", type_name)
    if m:
        if isinstance(value, dict):
            for k, item in value.items():
                walk(item, m.group(1), f"{path}.{k}", out)
        else:
            out.append(f"{path}: expected a map")
        return
    cls = getattr(client, type_name, None)
    if cls is None or not hasattr(cls, "openapi_types"):
        return  # str, int, bool, object (int-or-string), datetime, ...
    if not isinstance(value, dict):
        out.append(f"{path}: expected an object ({type_name})")
        return
    by_json = {v: k for k, v in cls.attribute_map.items()}
    for key, item in value.items():
        attr = by_json.get(key)
        if attr is None:
            out.append(f"{path}.{key}: unknown field of {type_name}")
            continue
        walk(item, cls.openapi_types[attr], f"{path}.{key}", out)


def main():
    docs = json.load(sys.stdin)
    problems = []
    for doc in docs:
        name = model_name(doc.get("apiVersion", ""), doc.get("kind", ""))
        where = f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"
        if getattr(client, name, None) is None:
            problems.append(f"{where}: no model {name} in python3-kubernetes")
            continue
        walk(doc, name, where, problems)
    for p in problems:
        print(p)
    print(f"{len(docs)} documents, {len(problems)} unknown fields")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
