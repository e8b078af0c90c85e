//! Partials that include each other: found when the templates load, since
//! Handlebars would recurse until the stack overflows when rendering them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use handlebars::Template;
use handlebars::template::TemplateElement;

use crate::diagnostics::{Location, Problem};

/// The partials of one registry and where each includes another by name.
#[derive(Default)]
pub(super) struct Includes {
    partials: BTreeMap<String, (PathBuf, Vec<Include>)>,
}

/// `{{> name}}` at a line and column of the including file.
struct Include {
    name: String,
    line: usize,
    col: usize,
}

impl Includes {
    /// Records the includes of partial `name` read from `file`. A source
    /// that does not compile includes nothing (its error is reported where
    /// it is registered).
    pub(super) fn add(&mut self, name: &str, file: &Path, source: &str) {
        let mut found = Vec::new();
        if let Ok(template) = Template::compile(source) {
            collect(&template, &mut found);
        }
        self.partials
            .insert(name.to_string(), (file.to_path_buf(), found));
    }

    /// Every cycle, each once, starting from its first partial by name, as
    /// the problem to report (at the include that starts it) and its partials.
    pub(super) fn cycles(&self) -> Vec<(Problem, Vec<String>)> {
        let mut cycles: BTreeSet<Vec<&str>> = BTreeSet::new();
        let mut done: BTreeSet<&str> = BTreeSet::new();
        for start in self.partials.keys() {
            let mut path = Vec::new();
            self.walk(start, &mut path, &mut done, &mut cycles);
        }
        cycles
            .into_iter()
            .map(|cycle| {
                (
                    self.problem(&cycle),
                    cycle.iter().map(|s| s.to_string()).collect(),
                )
            })
            .collect()
    }

    /// Depth first from `name`; a partial already on `path` closes a cycle.
    fn walk<'a>(
        &'a self,
        name: &'a str,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
        cycles: &mut BTreeSet<Vec<&'a str>>,
    ) {
        if let Some(at) = path.iter().position(|p| *p == name) {
            let mut cycle = path[at..].to_vec();
            // One cycle, whichever partial it was entered from.
            let first = (0..cycle.len()).min_by_key(|&i| cycle[i]).unwrap_or(0);
            cycle.rotate_left(first);
            cycles.insert(cycle);
            return;
        }
        let Some((_, includes)) = self.partials.get(name) else {
            return;
        };
        if done.contains(name) {
            return;
        }
        path.push(name);
        for include in includes {
            self.walk(&include.name, path, done, cycles);
        }
        path.pop();
        done.insert(name);
    }

    /// `a.fr.hbs:3:1: partial include cycle: a → b → a (b.fr.hbs:2:1 includes a)`.
    fn problem(&self, cycle: &[&str]) -> Problem {
        let mut chain: Vec<&str> = cycle.to_vec();
        chain.extend(cycle.first());
        let mut steps = chain.windows(2).filter_map(|pair| {
            let (file, includes) = self.partials.get(pair[0])?;
            let include = includes.iter().find(|i| i.name == pair[1])?;
            Some((Location::at(file, include.line, include.col), pair[1]))
        });
        let first = steps.next();
        let rest: Vec<String> = steps
            .map(|(at, to)| format!("{at} includes {to}"))
            .collect();
        let mut message = format!("partial include cycle: {}", chain.join(" → "));
        if !rest.is_empty() {
            message.push_str(&format!(" ({})", rest.join(", ")));
        }
        let location = first.map_or_else(
            || Location::file(Path::new(cycle.first().copied().unwrap_or_default())),
            |(at, _)| at,
        );
        Problem::error(location, message)
    }
}

/// The includes by name of a compiled template and of the blocks nested in it.
fn collect(template: &Template, found: &mut Vec<Include>) {
    for (i, element) in template.elements.iter().enumerate() {
        let nested: Vec<&Template> = match element {
            TemplateElement::PartialExpression(partial)
            | TemplateElement::PartialBlock(partial) => {
                if let Some(name) = partial.name.as_name() {
                    let (line, col) = template.mapping.get(i).map_or((1, 1), |m| (m.0, m.1));
                    found.push(Include {
                        name: name.to_string(),
                        line,
                        col,
                    });
                }
                partial.template.iter().collect()
            }
            TemplateElement::HelperBlock(block) => [&block.template, &block.inverse]
                .into_iter()
                .flatten()
                .collect(),
            TemplateElement::DecoratorBlock(decorator) => decorator.template.iter().collect(),
            _ => Vec::new(),
        };
        for template in nested {
            collect(template, found);
        }
    }
}
