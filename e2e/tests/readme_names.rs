//! The READMEs point at code that exists. Every crate README (and the root one) is read; each
//! inline code span that is a Rust path of ours (`aipam_core::alloc::pick`,
//! `aipam_webhook::pod::PodHooks::mutate`) must resolve to modules and items defined in that
//! crate, and each span that is a file path (`webhook/src/pod/plan.rs`) must name a file. In a
//! README's "Where things are" section, every `file.rs` `name` pair must also hold: `name` is
//! defined in that file. A renamed or deleted function therefore fails this test until the
//! README follows. No server is needed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the e2e crate sits in the workspace")
        .to_path_buf()
}

/// Crate name as written in Rust paths (`aipam_core`) → its directory.
fn crates(root: &Path) -> BTreeMap<String, PathBuf> {
    let manifest = fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let value: toml_like::Members = toml_like::members(&manifest);
    let mut out = BTreeMap::new();
    for m in value {
        let dir = root.join(&m);
        let Ok(text) = fs::read_to_string(dir.join("Cargo.toml")) else {
            continue;
        };
        if let Some(name) = toml_like::package_name(&text) {
            out.insert(name.replace('-', "_"), dir);
        }
    }
    out
}

/// Just enough TOML reading for `members = [...]` and `[package] name = "..."`.
mod toml_like {
    pub type Members = Vec<String>;

    pub fn members(text: &str) -> Members {
        let Some(start) = text.find("members") else {
            return Vec::new();
        };
        let rest = &text[start..];
        let (Some(open), Some(close)) = (rest.find('['), rest.find(']')) else {
            return Vec::new();
        };
        rest[open + 1..close]
            .split(',')
            .map(|s| s.trim().trim_matches('"').to_string())
            .filter(|s| !s.is_empty())
            .collect()
    }

    pub fn package_name(text: &str) -> Option<String> {
        let pkg = text.find("[package]")?;
        text[pkg..].lines().find_map(|l| {
            let l = l.trim();
            let v = l.strip_prefix("name")?.trim_start().strip_prefix('=')?;
            Some(v.trim().trim_matches('"').to_string())
        })
    }
}

fn code_spans(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_fence = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        let mut parts = line.split('`');
        parts.next();
        while let (Some(code), Some(_)) = (parts.next(), parts.next()) {
            out.push(code.to_string());
        }
    }
    out
}

fn is_ident(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with(|c: char| c.is_ascii_digit())
}

fn rust_sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n != "target") {
                rust_sources(&p, out);
            }
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Whether `name` is defined in `text`: an item, a module, a variant or a field of ours.
fn defines(text: &str, name: &str) -> bool {
    let item_kinds = [
        "fn ",
        "struct ",
        "enum ",
        "trait ",
        "type ",
        "const ",
        "static ",
        "mod ",
        "macro_rules! ",
    ];
    text.lines().any(|l| {
        let t = l.trim_start();
        let t = t
            .strip_prefix("pub(crate) ")
            .or_else(|| t.strip_prefix("pub(super) "))
            .or_else(|| t.strip_prefix("pub "))
            .unwrap_or(t);
        let t = t.strip_prefix("async ").unwrap_or(t);
        let after_kind = item_kinds.iter().find_map(|k| t.strip_prefix(k));
        let head = after_kind.unwrap_or(t);
        let word: String = head
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if word != name {
            return false;
        }
        let rest = head[word.len()..].trim_start();
        // An item, or a variant / field line (`Name,`, `Name(..)`, `Name {`, `name: T`).
        after_kind.is_some() || rest.is_empty() || rest.starts_with([',', '(', '{', ':', '='])
    }) || text.contains(&format!("pub use {name};"))
        || text.lines().any(|l| {
            l.trim_start().starts_with("pub use ")
                && l.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .any(|w| w == name)
        })
}

/// The module file of `segments` under a crate's `src`, if they are modules.
fn module_file(src: &Path, segments: &[&str]) -> Option<PathBuf> {
    let mut dir = src.to_path_buf();
    let mut file = ["lib.rs", "main.rs"]
        .iter()
        .map(|f| src.join(f))
        .find(|p| p.exists())?;
    for s in segments {
        let flat = dir.join(format!("{s}.rs"));
        let nested = dir.join(s).join("mod.rs");
        file = if flat.exists() {
            flat
        } else if nested.exists() {
            nested
        } else {
            return None;
        };
        dir = dir.join(s);
    }
    Some(file)
}

/// Why the Rust path `path` does not resolve, or `None` when it does.
fn check_path(path: &str, crates: &BTreeMap<String, PathBuf>) -> Option<String> {
    // `f(args)` names `f`.
    let path = path.split('(').next().unwrap_or(path);
    let segments: Vec<&str> = path.split("::").collect();
    let dir = crates.get(segments[0])?;
    let src = dir.join("src");
    let mut sources = Vec::new();
    rust_sources(&src, &mut sources);
    let all: Vec<String> = sources
        .iter()
        .filter_map(|p| fs::read_to_string(p).ok())
        .collect();
    // The longest prefix that is a module chain; the rest are items, defined in that module
    // (the first) and anywhere in the crate (methods, variants).
    let mut split = segments.len();
    while split > 1 && module_file(&src, &segments[1..split]).is_none() {
        split -= 1;
    }
    let module = module_file(&src, &segments[1..split])?;
    let rest = &segments[split..];
    let first = rest.first()?;
    let module_text = fs::read_to_string(&module).unwrap_or_default();
    if !defines(&module_text, first) {
        return Some(format!(
            "{path}: `{first}` is not defined in {}",
            module.display()
        ));
    }
    for s in &rest[1..] {
        if !all.iter().any(|t| defines(t, s)) {
            return Some(format!("{path}: `{s}` is not defined in {}", src.display()));
        }
    }
    None
}

fn looks_like_file(s: &str) -> bool {
    let exts = [".rs", ".sh", ".go", ".yaml", ".md", ".toml", ".json"];
    s.contains('/')
        && exts.iter().any(|e| s.ends_with(e))
        && !s.contains(['*', '<', '{', ' ', '$'])
        && !s.starts_with("http")
}

fn readmes(root: &Path, crates: &BTreeMap<String, PathBuf>) -> Vec<PathBuf> {
    let mut out = vec![root.join("README.md")];
    out.extend(
        crates
            .values()
            .map(|d| d.join("README.md"))
            .filter(|p| p.exists()),
    );
    out
}

/// The "Where things are" section of a README: the lines under that heading, up to the next
/// heading.
fn where_things_are(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with('#') {
            inside = line.to_lowercase().contains("where things are");
            continue;
        }
        if inside {
            out.push(line);
        }
    }
    out
}

#[test]
fn every_name_a_readme_cites_exists() {
    let root = root();
    let crates = crates(&root);
    assert!(
        crates.contains_key("aipam_core"),
        "workspace read: {crates:?}"
    );
    let mut problems = Vec::new();
    let mut checked = 0;
    for readme in readmes(&root, &crates) {
        let text = fs::read_to_string(&readme).unwrap();
        let base = readme.parent().unwrap();
        for span in code_spans(&text) {
            let span = span.trim();
            if span.contains("::") && crates.contains_key(span.split("::").next().unwrap_or("")) {
                checked += 1;
                if let Some(p) = check_path(span, &crates) {
                    problems.push(format!("{}: {p}", readme.display()));
                }
            } else if looks_like_file(span) {
                checked += 1;
                let path = span.split(':').next().unwrap_or(span);
                let candidates = [
                    base.join(path),
                    base.join("src").join(path),
                    root.join(path),
                ];
                if !candidates.iter().any(|p| p.exists()) {
                    problems.push(format!(
                        "{}: file `{span}` does not exist",
                        readme.display()
                    ));
                }
            }
        }
        // `file.rs` `name`, ...: each name defined in the file just named.
        for line in where_things_are(&text) {
            let spans = code_spans(line);
            let mut file: Option<PathBuf> = None;
            for s in spans {
                if s.ends_with(".rs") && !s.contains([' ', '*']) {
                    file = [base.join(&s), base.join("src").join(&s), root.join(&s)]
                        .into_iter()
                        .find(|p| p.exists());
                    if file.is_none() {
                        problems.push(format!("{}: file `{s}` does not exist", readme.display()));
                    }
                    continue;
                }
                let name = s.trim_end_matches("()");
                let last = name.rsplit("::").next().unwrap_or(name);
                if let (Some(f), true) = (&file, is_ident(last) && !name.contains(' ')) {
                    checked += 1;
                    let t = fs::read_to_string(f).unwrap_or_default();
                    if !defines(&t, last) {
                        problems.push(format!(
                            "{}: `{s}` is not defined in {}",
                            readme.display(),
                            f.display()
                        ));
                    }
                }
            }
        }
    }
    assert!(
        checked > 20,
        "only {checked} names checked: is the README scan broken?"
    );
    assert!(
        problems.is_empty(),
        "READMEs cite names that do not exist:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_check_fails_on_a_name_that_does_not_exist() {
    let crates = crates(&root());
    assert_eq!(check_path("aipam_core::alloc::pick", &crates), None);
    assert_eq!(check_path("aipam_core::alloc::claim_name()", &crates), None);
    assert!(check_path("aipam_core::alloc::no_such_function", &crates).is_some());
    assert!(check_path("aipam_core::no_such_module::pick", &crates).is_some());
    assert!(defines("pub(crate) async fn admit(\n", "admit"));
    assert!(defines("    Full,\n", "Full"));
    assert!(!defines("let admit = 1;\n", "admit"));
}
