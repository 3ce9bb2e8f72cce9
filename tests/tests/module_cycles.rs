//! No module of a RaftMQ crate imports, directly or through others, a module that imports it.
//!
//! A module *depends on* the modules it names: through `use`, through a path in its code
//! (`crate::…`, `super::…`, `self::…`, or a child module's name), and a parent on each child it
//! declares. So a child that reaches back for its parent's items (`use super::Shared`) closes a
//! circle; such shared items belong in a leaf module that both name.
//!
//! One reference back is not a dependency: a child naming its parent's type in order to add
//! methods to it (`impl BrokerService` in `service/receive.rs`). That is one type whose methods
//! are split over files by topic. Anything else the child takes from its parent (a helper, a
//! constant, another type) counts. Test-only code (`#[cfg(test)]`) is left out: a test module
//! is free to look at what it tests.
//!
//! The check parses every source file with `syn`, builds the graph and fails on each strongly
//! connected component of more than one module, naming the edges and where each was seen.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// The crates held to the rule, by source root.
const CRATES: &[&str] = &[
    "raft-log/src/lib.rs",
    "broker/src/lib.rs",
    "broker/client/src/lib.rs",
    "broker/remoting/src/lib.rs",
    "broker/namesrv/src/lib.rs",
    "proto/src/lib.rs",
    "chaos/src/main.rs",
    "broker/tools/src/bin/mqadmin/main.rs",
    "broker/tools/src/bin/mqbench/main.rs",
];

type ModPath = Vec<String>;

/// Where an edge was seen: the file and the path as written.
#[derive(Clone, Debug)]
struct Seen {
    file: PathBuf,
    path: String,
}

#[derive(Default)]
struct Graph {
    /// Every module of the crate.
    modules: BTreeSet<ModPath>,
    /// Declared child modules of each module.
    children: BTreeMap<ModPath, BTreeSet<String>>,
    /// Raw references per module: the path as written, made absolute, with where it was seen.
    references: Vec<(ModPath, ModPath, Seen)>,
    /// The types each module adds inherent methods to (`impl Name { … }`), by last segment.
    extends: BTreeMap<ModPath, BTreeSet<String>>,
}

fn is_test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| match &a.meta {
        syn::Meta::List(list) if list.path.is_ident("cfg") => list.tokens.to_string() == "test",
        _ => false,
    })
}

/// The file holding module `name` declared in `file` (Rust's default module layout).
fn child_file(file: &Path, name: &str) -> PathBuf {
    let dir = match file.file_name().and_then(|f| f.to_str()) {
        Some("lib.rs" | "main.rs" | "mod.rs") => file.parent().expect("a parent dir").to_path_buf(),
        _ => file.with_extension(""),
    };
    let flat = dir.join(format!("{name}.rs"));
    if flat.exists() {
        flat
    } else {
        dir.join(name).join("mod.rs")
    }
}

fn load_module(graph: &mut Graph, file: &Path, module: ModPath) {
    let source = fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let parsed = syn::parse_file(&source).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    load_items(graph, file, module, &parsed.items);
}

fn load_items(graph: &mut Graph, file: &Path, module: ModPath, items: &[syn::Item]) {
    graph.modules.insert(module.clone());
    graph.children.entry(module.clone()).or_default();
    for item in items {
        if let syn::Item::Mod(m) = item {
            if is_test_only(&m.attrs) {
                continue;
            }
            let name = m.ident.to_string();
            graph
                .children
                .get_mut(&module)
                .expect("inserted above")
                .insert(name.clone());
            let mut child = module.clone();
            child.push(name.clone());
            match &m.content {
                Some((_, inner)) => load_items(graph, file, child, inner),
                None => load_module(graph, &child_file(file, &name), child),
            }
            continue;
        }
        if item_is_test_only(item) {
            continue;
        }
        if let syn::Item::Impl(i) = item
            && i.trait_.is_none()
            && let syn::Type::Path(t) = &*i.self_ty
            && let Some(last) = t.path.segments.last()
        {
            graph
                .extends
                .entry(module.clone())
                .or_default()
                .insert(last.ident.to_string());
        }
        let mut collector = Collector { paths: Vec::new() };
        collector.visit_item(item);
        for path in collector.paths {
            let written = path.join("::");
            if let Some(absolute) = absolute(&module, &path, graph) {
                let seen = Seen {
                    file: file.to_path_buf(),
                    path: written,
                };
                graph.references.push((module.clone(), absolute, seen));
            }
        }
    }
}

fn item_is_test_only(item: &syn::Item) -> bool {
    let attrs = match item {
        syn::Item::Fn(i) => &i.attrs,
        syn::Item::Impl(i) => &i.attrs,
        syn::Item::Use(i) => &i.attrs,
        syn::Item::Struct(i) => &i.attrs,
        syn::Item::Enum(i) => &i.attrs,
        syn::Item::Const(i) => &i.attrs,
        syn::Item::Static(i) => &i.attrs,
        syn::Item::Trait(i) => &i.attrs,
        syn::Item::Type(i) => &i.attrs,
        syn::Item::Macro(i) => &i.attrs,
        _ => return false,
    };
    is_test_only(attrs)
}

/// `path` as seen from `module`, made absolute; `None` for paths into other crates.
fn absolute(module: &ModPath, path: &[String], graph: &Graph) -> Option<ModPath> {
    let mut base = module.clone();
    let mut rest = path;
    match path.first().map(String::as_str) {
        Some("crate") => {
            base.clear();
            rest = &path[1..];
        }
        Some("self") => rest = &path[1..],
        Some("super") => {
            while rest.first().map(String::as_str) == Some("super") {
                base.pop();
                rest = &rest[1..];
            }
        }
        Some(first)
            if graph
                .children
                .get(module)
                .is_some_and(|c| c.contains(first)) => {}
        _ => return None,
    }
    base.extend(rest.iter().cloned());
    Some(base)
}

/// Every path an item names: `use` trees flattened, and paths in types and expressions.
struct Collector {
    paths: Vec<Vec<String>>,
}

impl Collector {
    fn flatten(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.flatten(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) if n.ident == "self" => self.paths.push(prefix.clone()),
            syn::UseTree::Name(n) => {
                let mut p = prefix.clone();
                p.push(n.ident.to_string());
                self.paths.push(p);
            }
            syn::UseTree::Rename(r) => {
                let mut p = prefix.clone();
                p.push(r.ident.to_string());
                self.paths.push(p);
            }
            syn::UseTree::Glob(_) => self.paths.push(prefix.clone()),
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    self.flatten(prefix, t);
                }
            }
        }
    }
}

impl<'ast> Visit<'ast> for Collector {
    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        self.flatten(&mut Vec::new(), &u.tree);
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        if p.segments.len() > 1 {
            self.paths
                .push(p.segments.iter().map(|s| s.ident.to_string()).collect());
        }
        syn::visit::visit_path(self, p);
    }

    fn visit_item_mod(&mut self, _: &'ast syn::ItemMod) {
        // Inline modules are walked as modules of their own.
    }

    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        if !is_test_only(&f.attrs) {
            syn::visit::visit_item_fn(self, f);
        }
    }

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        if !is_test_only(&f.attrs) {
            syn::visit::visit_impl_item_fn(self, f);
        }
    }
}

/// Module-to-module edges: the longest module prefix of each reference, and parent → child.
fn edges(graph: &Graph) -> BTreeMap<(ModPath, ModPath), Seen> {
    let mut out = BTreeMap::new();
    for (from, target, seen) in &graph.references {
        let to = (0..=target.len())
            .rev()
            .map(|n| target[..n].to_vec())
            .find(|p| graph.modules.contains(p))
            .expect("the crate root is a module");
        if &to == from || extends_parent(graph, from, &to, target) {
            continue;
        }
        out.entry((from.clone(), to))
            .or_insert_with(|| seen.clone());
    }
    for (parent, names) in &graph.children {
        for name in names {
            let mut child = parent.clone();
            child.push(name.clone());
            let seen = Seen {
                file: PathBuf::from("(declaration)"),
                path: format!("mod {name}"),
            };
            out.entry((parent.clone(), child)).or_insert(seen);
        }
    }
    out
}

/// Whether `target`, seen from `from`, is the type of `from`'s parent that `from` adds methods to.
fn extends_parent(graph: &Graph, from: &ModPath, to: &ModPath, target: &ModPath) -> bool {
    let is_parent = from.len() == to.len() + 1 && from.starts_with(to);
    let item = (target.len() == to.len() + 1).then(|| &target[to.len()]);
    is_parent
        && item.is_some_and(|name| {
            graph
                .extends
                .get(from)
                .is_some_and(|types| types.contains(name))
        })
}

/// Strongly connected components of more than one module (Tarjan).
fn circles(
    modules: &BTreeSet<ModPath>,
    edges: &BTreeMap<(ModPath, ModPath), Seen>,
) -> Vec<Vec<ModPath>> {
    struct Tarjan<'a> {
        next: BTreeMap<&'a ModPath, Vec<&'a ModPath>>,
        index: BTreeMap<&'a ModPath, usize>,
        low: BTreeMap<&'a ModPath, usize>,
        stack: Vec<&'a ModPath>,
        on_stack: BTreeSet<&'a ModPath>,
        counter: usize,
        found: Vec<Vec<ModPath>>,
    }
    impl<'a> Tarjan<'a> {
        fn connect(&mut self, v: &'a ModPath) {
            self.index.insert(v, self.counter);
            self.low.insert(v, self.counter);
            self.counter += 1;
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.next.get(v).cloned().unwrap_or_default() {
                if !self.index.contains_key(w) {
                    self.connect(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.on_stack.contains(w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.push(w.clone());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut t = Tarjan {
        next: BTreeMap::new(),
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        counter: 0,
        found: Vec::new(),
    };
    for (from, to) in edges.keys() {
        t.next.entry(from).or_default().push(to);
    }
    for m in modules {
        if !t.index.contains_key(m) {
            t.connect(m);
        }
    }
    t.found
}

fn name(m: &ModPath) -> String {
    if m.is_empty() {
        "crate".to_string()
    } else {
        m.join("::")
    }
}

fn report(root: &str, graph: &Graph) -> Option<String> {
    let edges = edges(graph);
    let found = circles(&graph.modules, &edges);
    if found.is_empty() {
        return None;
    }
    let mut text = format!("{root}: {} module circle(s)\n", found.len());
    for component in found {
        let members: BTreeSet<&ModPath> = component.iter().collect();
        text.push_str(&format!(
            "  circle: {}\n",
            component.iter().map(name).collect::<Vec<_>>().join(", ")
        ));
        for ((from, to), seen) in &edges {
            if members.contains(from) && members.contains(to) {
                text.push_str(&format!(
                    "    {} -> {}  ({} in {})\n",
                    name(from),
                    name(to),
                    seen.path,
                    seen.file.display()
                ));
            }
        }
    }
    Some(text)
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

#[test]
fn no_crate_has_a_module_circle() {
    let mut failures = String::new();
    for root in CRATES {
        let mut graph = Graph::default();
        load_module(&mut graph, &workspace().join(root), Vec::new());
        if let Some(text) = report(root, &graph) {
            failures.push_str(&text);
        }
    }
    assert!(failures.is_empty(), "module circles:\n{failures}");
}

/// The checker itself: a child that names its parent's item closes a circle; one that names a
/// sibling leaf does not.
#[test]
fn the_checker_sees_a_child_reaching_back_to_its_parent() {
    let dir = std::env::temp_dir().join(format!("module-cycles-{}", std::process::id()));
    fs::create_dir_all(dir.join("store")).expect("temp dir");
    fs::write(dir.join("lib.rs"), "mod store;\n").expect("write");
    fs::write(
        dir.join("store/mod.rs"),
        "mod flusher;\nmod shared;\npub struct Facade;\n",
    )
    .expect("write");
    fs::write(dir.join("store/shared.rs"), "pub struct Shared;\n").expect("write");

    fs::write(dir.join("store/flusher.rs"), "use super::Facade;\n").expect("write");
    let mut graph = Graph::default();
    load_module(&mut graph, &dir.join("lib.rs"), Vec::new());
    let text = report("fixture", &graph).expect("a child naming its parent is a circle");
    assert!(
        text.contains("store::flusher -> store  (super::Facade"),
        "{text}"
    );

    fs::write(dir.join("store/flusher.rs"), "use super::shared::Shared;\n").expect("write");
    let mut graph = Graph::default();
    load_module(&mut graph, &dir.join("lib.rs"), Vec::new());
    assert_eq!(report("fixture", &graph), None);

    // Adding methods to the parent's type is no dependency; taking anything else is.
    let extension = "use super::Facade;\nimpl Facade { fn flush(&self) {} }\n";
    fs::write(dir.join("store/flusher.rs"), extension).expect("write");
    let mut graph = Graph::default();
    load_module(&mut graph, &dir.join("lib.rs"), Vec::new());
    assert_eq!(report("fixture", &graph), None);
    let more = format!("{extension}fn f() {{ super::helper(); }}\n");
    fs::write(dir.join("store/flusher.rs"), more).expect("write");
    let mut graph = Graph::default();
    load_module(&mut graph, &dir.join("lib.rs"), Vec::new());
    let text = report("fixture", &graph).expect("a parent's helper is a dependency");
    assert!(
        text.contains("store::flusher -> store  (super::helper"),
        "{text}"
    );

    fs::remove_dir_all(&dir).expect("clean up");
}
