//! The house rule of ARCHITECTURE.md, checked: every module of `src/` sits in
//! one layer of its table, imports only from the layers below its own (so
//! there is no import cycle), and opens with a line saying what it is for.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers of ARCHITECTURE.md, bottom first: the rows of its table whose
/// first cell is a number, with the modules named in backquotes in the second.
fn layers(architecture: &str) -> BTreeMap<String, usize> {
    let mut layer_of = BTreeMap::new();
    for line in architecture.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (Some(number), Some(modules)) = (cells.get(1), cells.get(2)) else {
            continue;
        };
        let Ok(layer) = number.parse::<usize>() else {
            continue;
        };
        for module in modules.split('`').skip(1).step_by(2) {
            let name = module.trim_end_matches('/');
            assert!(
                layer_of.insert(name.to_string(), layer).is_none(),
                "ARCHITECTURE.md names module {name} in two layers"
            );
        }
    }
    layer_of
}

/// One `crate::module` reference: which module, and where.
struct Import {
    module: String,
    file: PathBuf,
    line: usize,
}

/// The crate's top-level modules (a file or a folder directly under `src/`),
/// each with its source files.
fn modules(src: &Path) -> BTreeMap<String, Vec<PathBuf>> {
    let mut modules = BTreeMap::new();
    for entry in std::fs::read_dir(src).unwrap() {
        let path = entry.unwrap().path();
        let name = if path.is_dir() {
            path.file_name().unwrap().to_string_lossy().into_owned()
        } else if path.extension().is_some_and(|e| e == "rs") {
            path.file_stem().unwrap().to_string_lossy().into_owned()
        } else {
            continue;
        };
        if name == "lib" || name == "main" {
            continue;
        }
        modules.insert(name, rust_files(&path));
    }
    modules
}

fn rust_files(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_path_buf()];
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).unwrap() {
        files.extend(rust_files(&entry.unwrap().path()));
    }
    files.sort();
    files
}

/// The `crate::` references of a source file outside its comments and its
/// unit tests (tests may reach anywhere): `crate::a::b` and `crate::{a, b}`.
fn imports(file: &Path, source: &str, known: &BTreeSet<&str>) -> Vec<Import> {
    let mut found = Vec::new();
    for (i, line) in source.lines().enumerate() {
        if line.starts_with("#[cfg(test)]") && source.lines().nth(i + 1) == Some("mod tests {") {
            break;
        }
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let names: Vec<&str> = match rest.strip_prefix('{') {
                Some(group) => group
                    .split('}')
                    .next()
                    .unwrap_or("")
                    .split(',')
                    .map(|part| part.trim().split("::").next().unwrap_or(""))
                    .collect(),
                None => vec![
                    rest.split(|c: char| !c.is_alphanumeric() && c != '_')
                        .next()
                        .unwrap_or(""),
                ],
            };
            for name in names {
                if known.contains(name) {
                    found.push(Import {
                        module: name.to_string(),
                        file: file.to_path_buf(),
                        line: i + 1,
                    });
                }
            }
        }
    }
    found
}

/// Every breach of the rule, as `file:line: message`.
fn violations(src: &Path, layer_of: &BTreeMap<String, usize>) -> Vec<String> {
    let modules = modules(src);
    let known: BTreeSet<&str> = modules.keys().map(String::as_str).collect();
    let mut found = Vec::new();
    for (module, files) in &modules {
        let Some(&layer) = layer_of.get(module) else {
            found.push(format!(
                "{}: module {module} is in no layer of ARCHITECTURE.md",
                files[0].display()
            ));
            continue;
        };
        for file in files {
            let source = std::fs::read_to_string(file).unwrap();
            if !source.starts_with("//!") {
                found.push(format!(
                    "{}:1: a module opens with a `//!` line saying what it is for",
                    file.display()
                ));
            }
            for import in imports(file, &source, &known) {
                if import.module == *module {
                    continue;
                }
                match layer_of.get(&import.module) {
                    Some(&below) if below < layer => {}
                    Some(&other) => found.push(format!(
                        "{}:{}: {module} (layer {layer}) imports {} (layer {other}): a module imports only from the layers below its own",
                        import.file.display(),
                        import.line,
                        import.module
                    )),
                    None => {}
                }
            }
        }
    }
    for module in layer_of.keys() {
        if !modules.contains_key(module) {
            found.push(format!("ARCHITECTURE.md: module {module} is not in src/"));
        }
    }
    found
}

#[test]
fn modules_import_only_from_the_layers_below_their_own() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let architecture = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let layer_of = layers(&architecture);
    assert!(
        layer_of.len() >= 10,
        "ARCHITECTURE.md lists its layers in a table: {layer_of:?}"
    );
    let found = violations(&root.join("src"), &layer_of);
    assert!(found.is_empty(), "\n{}", found.join("\n"));
}

/// The check itself: a folder with an upward import, a same-layer import, a
/// module in no layer and a file without its purpose line is refused, each
/// breach named.
#[test]
fn the_check_finds_upward_imports_cycles_and_unlisted_modules() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    let write = |path: &str, text: &str| {
        let path = src.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write(
        "model.rs",
        "//! Invoices.\nuse crate::engine::Decision; // upward\n",
    );
    write(
        "engine/mod.rs",
        "//! Decides.\nuse crate::{model, config};\n",
    );
    write("engine/trace.rs", "no purpose line\n");
    write("config.rs", "//! Config.\nuse crate::model::Invoice;\n");
    write("stray.rs", "//! Not in the table.\n");
    write(
        "feed.rs",
        "//! Feeds.\nuse crate::model::Invoice;\n#[cfg(test)]\nmod tests {\n    use crate::engine::X;\n}\n",
    );
    let layer_of = layers(
        "| layer | modules |\n|---|---|\n| 1 | `model` |\n| 2 | `config`, `feed` |\n| 2 | `engine/` |\n",
    );
    let found = violations(src, &layer_of).join("\n");
    assert!(
        found.contains("model.rs:2: model (layer 1) imports engine (layer 2)"),
        "{found}"
    );
    assert!(
        found.contains("engine/mod.rs:2: engine (layer 2) imports config (layer 2)"),
        "{found}"
    );
    assert!(
        found.contains("trace.rs:1: a module opens with a `//!` line"),
        "{found}"
    );
    assert!(found.contains("module stray is in no layer"), "{found}");
    assert!(
        !found.contains("feed"),
        "unit tests may import anything: {found}"
    );
    assert_eq!(found.lines().count(), 4, "{found}");
}
