//! Floors without circles: inside every crate of the workspace, no module imports another
//! that imports it back, directly or around a loop. A module's parent counts as a module
//! too (a child that names an item defined in its parent's own file depends on the
//! parent), so `Store` and the modules under it cannot lean on each other either.
//!
//! Method: every source file is parsed with `syn`; every path in it (uses and expressions,
//! test code left out) that resolves inside the crate becomes an edge between the two
//! children of the nearest module that holds both; then each module's children must form
//! no cycle (Tarjan's strongly connected components).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// A module's path from the crate root (`[]` is the root).
type ModPath = Vec<String>;

struct Module {
    /// Child modules declared in this module's file.
    children: BTreeSet<String>,
    /// Items this module's own file defines.
    items: BTreeSet<String>,
    /// Names its file imports or re-exports from inside the crate, and what they name.
    aliases: BTreeMap<String, ModPath>,
    /// Every in-crate path the file names, resolved to absolute module paths.
    refs: Vec<ModPath>,
}

fn module_path(src: &Path, file: &Path) -> ModPath {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if !matches!(stem, "lib" | "main" | "mod") {
        parts.push(stem.to_owned());
    }
    parts
}

fn is_test_code(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.parse_args::<syn::Meta>()
                .is_ok_and(|m| m.path().is_ident("test"))
    })
}

/// Collects the file's paths as written (segments), leaving out `#[cfg(test)]` items.
#[derive(Default)]
struct Paths(Vec<Vec<String>>);

impl<'a> Visit<'a> for Paths {
    fn visit_item(&mut self, item: &'a syn::Item) {
        let attrs = match item {
            syn::Item::Mod(m) => &m.attrs,
            syn::Item::Fn(f) => &f.attrs,
            syn::Item::Impl(i) => &i.attrs,
            syn::Item::Use(u) => &u.attrs,
            _ => return syn::visit::visit_item(self, item),
        };
        if !is_test_code(attrs) {
            syn::visit::visit_item(self, item);
        }
    }

    fn visit_path(&mut self, path: &'a syn::Path) {
        self.0
            .push(path.segments.iter().map(|s| s.ident.to_string()).collect());
        syn::visit::visit_path(self, path);
    }

    fn visit_item_use(&mut self, item: &'a syn::ItemUse) {
        let mut prefix = Vec::new();
        use_paths(&item.tree, &mut prefix, &mut self.0);
    }
}

fn use_paths(tree: &syn::UseTree, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            use_paths(&p.tree, prefix, out);
            prefix.pop();
        }
        syn::UseTree::Name(n) => out.push([&prefix[..], &[n.ident.to_string()]].concat()),
        // The original name, then the new one: [`aliases_of`] reads the pair.
        syn::UseTree::Rename(r) => out.push(
            [
                &prefix[..],
                &[r.ident.to_string(), format!("as {}", r.rename)],
            ]
            .concat(),
        ),
        syn::UseTree::Glob(_) => out.push(prefix.clone()),
        syn::UseTree::Group(g) => g.items.iter().for_each(|t| use_paths(t, prefix, out)),
    }
}

/// `path` as written in module `at` (whose children are `children`), made absolute; `None`
/// when it leaves the crate or names nothing of it.
fn resolve(at: &ModPath, children: &BTreeSet<String>, path: &[String]) -> Option<ModPath> {
    let (first, rest) = path.split_first()?;
    let mut base = match first.as_str() {
        "crate" => Vec::new(),
        "self" => at.clone(),
        "super" => {
            let mut base = at.clone();
            base.pop();
            let mut rest = rest;
            while rest.first().is_some_and(|s| s == "super") {
                base.pop();
                rest = &rest[1..];
            }
            return Some([base, rest.to_vec()].concat());
        }
        // A path relative to this module (a lone name is a value or type, not a module's).
        name if children.contains(name) && !rest.is_empty() => {
            return Some([at.clone(), path.to_vec()].concat())
        }
        _ => return None,
    };
    base.extend(rest.iter().cloned());
    Some(base)
}

/// The names a file's own `use` items bring in from inside the crate (globs left out).
fn aliases_of(
    ast: &syn::File,
    at: &ModPath,
    children: &BTreeSet<String>,
) -> BTreeMap<String, ModPath> {
    let mut aliases = BTreeMap::new();
    for item in &ast.items {
        let syn::Item::Use(used) = item else { continue };
        if is_test_code(&used.attrs) {
            continue;
        }
        let mut paths = Vec::new();
        use_paths(&used.tree, &mut Vec::new(), &mut paths);
        for mut path in paths {
            let name = match path.last().and_then(|l| l.strip_prefix("as ")) {
                Some(rename) => {
                    let rename = rename.to_owned();
                    path.pop();
                    rename
                }
                None => path.last().cloned().unwrap_or_default(),
            };
            if let Some(target) = resolve(at, children, &path) {
                aliases.insert(name, target);
            }
        }
    }
    aliases
}

fn parse_crate(src: &Path) -> BTreeMap<ModPath, Module> {
    let mut files = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs")
                // A main.rs beside a lib.rs is a binary of its own, over the library.
                && !(path.ends_with("main.rs") && dir == src && src.join("lib.rs").exists())
            {
                files.push(path);
            }
        }
    }
    let mut modules = BTreeMap::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let ast = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let at = module_path(src, &file);
        let mut children = BTreeSet::new();
        let mut items = BTreeSet::new();
        for item in &ast.items {
            match item {
                syn::Item::Mod(m) if !is_test_code(&m.attrs) => {
                    children.insert(m.ident.to_string());
                }
                syn::Item::Struct(s) => drop(items.insert(s.ident.to_string())),
                syn::Item::Enum(e) => drop(items.insert(e.ident.to_string())),
                syn::Item::Fn(f) => drop(items.insert(f.sig.ident.to_string())),
                syn::Item::Trait(t) => drop(items.insert(t.ident.to_string())),
                syn::Item::Const(c) => drop(items.insert(c.ident.to_string())),
                syn::Item::Type(t) => drop(items.insert(t.ident.to_string())),
                syn::Item::Static(s) => drop(items.insert(s.ident.to_string())),
                _ => {}
            }
        }
        let mut paths = Paths::default();
        paths.visit_file(&ast);
        let refs = paths
            .0
            .iter()
            .map(|p| {
                p.iter()
                    .filter(|s| !s.starts_with("as "))
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .filter_map(|p| resolve(&at, &children, &p))
            .collect();
        let aliases = aliases_of(&ast, &at, &children);
        modules.insert(
            at,
            Module {
                children,
                items,
                aliases,
                refs,
            },
        );
    }
    modules
}

/// Edges among the children of each module (and the module itself, as `"(self)"`).
fn edges(modules: &BTreeMap<ModPath, Module>) -> BTreeMap<ModPath, BTreeSet<(String, String)>> {
    const SELF: &str = "(self)";
    let mut graphs: BTreeMap<ModPath, BTreeSet<(String, String)>> = BTreeMap::new();
    for (at, module) in modules {
        for target in &module.refs {
            let mut target = target.clone();
            // Through re-exports to what they name (a few hops at most).
            let (common, parent, owner) = loop {
                // The nearest ancestor of both (or `at` itself, for a module naming its own).
                let common = at.iter().zip(&target).take_while(|(a, b)| a == b).count();
                let parent: ModPath = at[..common].to_vec();
                let owner = modules.get(&parent);
                let alias = owner
                    .zip(target.get(common))
                    .and_then(|(o, n)| o.aliases.get(n));
                match alias {
                    Some(named) if !named.starts_with(&target[..=common]) => {
                        target = [named.clone(), target[common + 1..].to_vec()].concat();
                    }
                    _ => break (common, parent, owner),
                }
            };
            let Some(owner) = owner else {
                continue;
            };
            let from = at.get(common).cloned().unwrap_or_else(|| SELF.to_owned());
            let to = match target.get(common) {
                Some(child) if owner.children.contains(child) => child.clone(),
                Some(item) if owner.items.contains(item) => SELF.to_owned(),
                _ => continue,
            };
            if from != to {
                graphs.entry(parent).or_default().insert((from, to));
            }
        }
    }
    graphs
}

/// The strongly connected components of more than one node (Tarjan).
fn cycles(edges: &BTreeSet<(String, String)>) -> Vec<Vec<String>> {
    struct Tarjan<'e> {
        next: BTreeMap<&'e str, Vec<&'e str>>,
        index: BTreeMap<&'e str, (usize, usize)>,
        stack: Vec<&'e str>,
        found: Vec<Vec<String>>,
    }
    impl<'e> Tarjan<'e> {
        fn visit(&mut self, v: &'e str) {
            let i = self.index.len();
            self.index.insert(v, (i, i));
            self.stack.push(v);
            for w in self.next.get(v).cloned().unwrap_or_default() {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.index[v].1.min(self.index[w].1);
                    self.index.get_mut(v).unwrap().1 = low;
                } else if self.stack.contains(&w) {
                    let low = self.index[v].1.min(self.index[w].0);
                    self.index.get_mut(v).unwrap().1 = low;
                }
            }
            if self.index[v].0 == self.index[v].1 {
                let at = self.stack.iter().rposition(|n| *n == v).unwrap();
                let component: Vec<String> = self.stack.drain(at..).map(str::to_owned).collect();
                if component.len() > 1 {
                    self.found.push(component);
                }
            }
        }
    }
    let mut tarjan = Tarjan {
        next: BTreeMap::new(),
        index: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for (from, to) in edges {
        tarjan.next.entry(from).or_default().push(to);
    }
    let nodes: Vec<&str> = tarjan.next.keys().copied().collect();
    for node in nodes {
        if !tarjan.index.contains_key(node) {
            tarjan.visit(node);
        }
    }
    tarjan.found
}

fn circles_of(src: &Path) -> Vec<String> {
    let modules = parse_crate(src);
    let mut found = Vec::new();
    for (parent, graph) in edges(&modules) {
        for cycle in cycles(&graph) {
            let involved: Vec<String> = graph
                .iter()
                .filter(|(a, b)| cycle.contains(a) && cycle.contains(b))
                .map(|(a, b)| format!("{a} -> {b}"))
                .collect();
            found.push(format!(
                "{} in {}: {}",
                src.display(),
                if parent.is_empty() {
                    "the crate root".to_owned()
                } else {
                    parent.join("::")
                },
                involved.join(", ")
            ));
        }
    }
    found
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut found = Vec::new();
    for krate in ["core", "store", "ledger", "projections", "simulator", "."] {
        found.extend(circles_of(&root.join(krate).join("src")));
    }
    assert!(found.is_empty(), "import circles:\n{}", found.join("\n"));
}

#[test]
fn a_circle_is_found_when_there_is_one() {
    // The checker must be able to fail: two modules that name each other, and a child that
    // leans on an item of the parent that names the child.
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::write(
        src.join("lib.rs"),
        "mod a;\nmod b;\npub struct Root(a::A);\n",
    )
    .unwrap();
    std::fs::write(src.join("a.rs"), "pub struct A(crate::b::B);\n").unwrap();
    std::fs::write(
        src.join("b.rs"),
        "use super::a::A;\npub struct B(Box<A>);\n",
    )
    .unwrap();
    let found = circles_of(src);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains("a -> b") && found[0].contains("b -> a"),
        "{found:?}"
    );

    std::fs::write(src.join("b.rs"), "pub struct B(Box<crate::Root>);\n").unwrap();
    let found = circles_of(src);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("(self) -> a"), "{found:?}");
}
