//! Reading manifests: files and directories of YAML (multi-document) or JSON, and the sample
//! manifests embedded in the binary.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

/// One document of one file.
#[derive(Debug, Clone)]
pub struct Document {
    /// Where it came from.
    pub file: String,
    /// 1-based position in the file.
    pub index: usize,
    /// The document.
    pub value: serde_json::Value,
}

impl Document {
    /// `file (document N)`.
    pub fn location(&self) -> String {
        format!("{} (document {})", self.file, self.index)
    }

    /// `apiVersion`, `kind` and `metadata.name`, as far as present.
    pub fn identity(&self) -> (String, String, String) {
        let s = |v: Option<&serde_json::Value>| {
            v.and_then(|v| v.as_str()).unwrap_or_default().to_string()
        };
        (
            s(self.value.get("apiVersion")),
            s(self.value.get("kind")),
            s(self.value.pointer("/metadata/name")),
        )
    }
}

/// The sample manifests of `config/samples/`, compiled in, so that the tool has an embedded
/// default input. A test checks that this list and the directory agree.
pub const EMBEDDED_SAMPLES: &[(&str, &str)] = &[
    (
        "config/samples/priorities/00-config.yaml",
        include_str!("../../config/samples/priorities/00-config.yaml"),
    ),
    (
        "config/samples/priorities/01-namespaces.yaml",
        include_str!("../../config/samples/priorities/01-namespaces.yaml"),
    ),
    (
        "config/samples/priorities/02-ippools.yaml",
        include_str!("../../config/samples/priorities/02-ippools.yaml"),
    ),
    (
        "config/samples/priorities/03-workloads.yaml",
        include_str!("../../config/samples/priorities/03-workloads.yaml"),
    ),
    (
        "config/samples/zones/00-nodes.yaml",
        include_str!("../../config/samples/zones/00-nodes.yaml"),
    ),
    (
        "config/samples/zones/01-namespace.yaml",
        include_str!("../../config/samples/zones/01-namespace.yaml"),
    ),
    (
        "config/samples/zones/02-subnets.yaml",
        include_str!("../../config/samples/zones/02-subnets.yaml"),
    ),
    (
        "config/samples/zones/03-ippools.yaml",
        include_str!("../../config/samples/zones/03-ippools.yaml"),
    ),
    (
        "config/samples/zones/04-network.yaml",
        include_str!("../../config/samples/zones/04-network.yaml"),
    ),
    (
        "config/samples/zones/05-daemonset.yaml",
        include_str!("../../config/samples/zones/05-daemonset.yaml"),
    ),
    (
        "config/samples/zones/06-deployment.yaml",
        include_str!("../../config/samples/zones/06-deployment.yaml"),
    ),
];

/// Splits one file's text into documents. Empty documents (a trailing `---`) are skipped.
pub fn parse_text(file: &str, text: &str) -> Result<Vec<Document>> {
    let mut out = Vec::new();
    for (i, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = serde_json::Value::deserialize(de)
            .with_context(|| format!("{file} (document {}): not valid YAML", i + 1))?;
        if value.is_null() {
            continue;
        }
        // A `kind: List` holds its documents in `items`.
        if value.get("kind").and_then(|k| k.as_str()) == Some("List") {
            if let Some(items) = value.get("items").and_then(|i| i.as_array()) {
                for item in items {
                    out.push(Document {
                        file: file.to_string(),
                        index: i + 1,
                        value: item.clone(),
                    });
                }
                continue;
            }
        }
        out.push(Document {
            file: file.to_string(),
            index: i + 1,
            value,
        });
    }
    Ok(out)
}

/// A JSON object of strings (labels, annotations, ConfigMap data) as a map; non-string values
/// are kept in their JSON text, absent or non-object values give an empty map.
pub fn string_map(v: Option<&serde_json::Value>) -> std::collections::BTreeMap<String, String> {
    v.and_then(serde_json::Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let s = match v {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (k.clone(), s)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn is_manifest(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

fn collect(path: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    let meta = fs::metadata(path).with_context(|| format!("{}: cannot read", path.display()))?;
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = fs::read_dir(path)
            .with_context(|| format!("{}: cannot list", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for e in entries {
            if e.is_dir() || is_manifest(&e) {
                collect(&e, files)?;
            }
        }
    } else {
        files.push(path.to_path_buf());
    }
    Ok(())
}

/// Reads every manifest under the given files and directories (directories recursively, files
/// ending in .yaml, .yml or .json, in name order).
pub fn load_paths(paths: &[PathBuf]) -> Result<Vec<Document>> {
    let mut files = Vec::new();
    for p in paths {
        collect(p, &mut files)?;
    }
    let mut docs = Vec::new();
    for f in files {
        let text =
            fs::read_to_string(&f).with_context(|| format!("{}: cannot read", f.display()))?;
        docs.extend(parse_text(&f.display().to_string(), &text)?);
    }
    Ok(docs)
}

/// The embedded samples as documents.
pub fn load_embedded() -> Result<Vec<Document>> {
    let mut docs = Vec::new();
    for (file, text) in EMBEDDED_SAMPLES {
        docs.extend(parse_text(file, text)?);
    }
    Ok(docs)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn embedded_samples_are_exactly_the_sample_directory() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut files = Vec::new();
        collect(&root.join("config/samples"), &mut files).unwrap();
        let mut on_disk: Vec<String> = files
            .iter()
            .map(|f| {
                f.strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/")
            })
            .collect();
        on_disk.sort();
        let mut embedded: Vec<String> = EMBEDDED_SAMPLES
            .iter()
            .map(|(f, _)| f.to_string())
            .collect();
        embedded.sort();
        assert_eq!(
            embedded, on_disk,
            "cli/src/manifests.rs EMBEDDED_SAMPLES must list every file of config/samples"
        );
    }

    #[test]
    fn multi_document_files_and_lists() {
        let docs = parse_text(
            "x.yaml",
            "kind: A\n---\n---\nkind: List\nitems:\n- kind: B\n- kind: C\n",
        )
        .unwrap();
        let kinds: Vec<String> = docs.iter().map(|d| d.identity().1).collect();
        assert_eq!(kinds, vec!["A", "B", "C"]);
        assert_eq!(docs[1].index, 3);
        let err = parse_text("bad.yaml", "kind: [").unwrap_err().to_string();
        assert!(err.contains("bad.yaml (document 1)"), "{err}");
    }
}
