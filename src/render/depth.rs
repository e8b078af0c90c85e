//! The nesting of a template's blocks, bounded before Handlebars parses it:
//! its parser and renderer recurse once per block, so thousands of nested
//! `{{#if}}` overflow the stack, and tens of thousands take seconds to parse.

use std::path::Path;

use crate::diagnostics::{Location, Problem};

/// Refuses a template whose `{{#…}}` / `{{^…}}` blocks nest deeper than
/// `max`, in one pass over the text, at the block that goes one too deep.
/// Comments and raw blocks (`{{{{raw}}}}…{{{{/raw}}}}`) are text, and so is
/// an escaped `\{{`. It is a guard, not a parser: Handlebars still reports
/// what is malformed.
pub(super) fn check_template_depth(path: &Path, source: &str, max: usize) -> Result<(), Problem> {
    let mut depth = 0usize;
    let mut at = 0;
    while let Some(found) = source[at..].find("{{") {
        let start = at + found;
        if source[..start].ends_with('\\') {
            at = start + 2;
            continue;
        }
        let rest = &source[start..];
        if let Some(raw) = rest.strip_prefix("{{{{") {
            // A raw block: nothing up to its `{{{{/…}}}}` is Handlebars.
            at = match raw.find("{{{{/") {
                Some(close) if !raw.starts_with('/') => start + 4 + close + 5,
                _ => start + 4,
            };
            continue;
        }
        let tag = rest[2..].trim_start_matches('~');
        let end = if tag.starts_with("!--") {
            rest.find("--}}").map(|i| i + 4)
        } else {
            rest.find("}}").map(|i| i + 2)
        };
        let Some(end) = end else { break };
        let opens = tag.starts_with('#')
            || (tag.starts_with('^') && !tag[1..].trim_start_matches(['~', ' ']).starts_with("}}"));
        if opens {
            depth += 1;
            if depth > max {
                let line_start = source[..start].rfind('\n').map_or(0, |i| i + 1);
                let line = source[..start].matches('\n').count() + 1;
                let col = source[line_start..start].chars().count() + 1;
                return Err(Problem::error(
                    Location::at(path, line, col),
                    format!(
                        "blocks nested deeper than limits.template_depth ({max} blocks): \
                         simplify the template, or raise the limit in relance.yaml"
                    ),
                ));
            }
        } else if tag.starts_with('/') {
            depth = depth.saturating_sub(1);
        }
        at = start + end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth_error(source: &str, max: usize) -> Option<String> {
        check_template_depth(Path::new("t.hbs"), source, max)
            .err()
            .map(|p| p.to_string())
    }

    #[test]
    fn blocks_are_counted_and_the_one_too_deep_located() {
        let nested = "{{#if a}}{{#each b}}\n  {{^c}}x{{/c}}{{/each}}{{/if}}";
        assert_eq!(depth_error(nested, 3), None);
        let error = depth_error(nested, 2).unwrap();
        assert!(
            error.starts_with(
                "t.hbs:2:3: blocks nested deeper than limits.template_depth (2 blocks)"
            ),
            "{error}"
        );
        // Siblings do not add up; else, comments, raw blocks and escapes are not blocks.
        let flat = "{{#if a}}{{else}}{{^}}{{/if}}{{#if b}}{{/if}}{{!-- {{#if}} }} --}}{{! {{#x}}\
                    {{{{raw}}}}{{#if}}{{{{/raw}}}}\\{{#if}}{{~#if c~}}é{{~/if~}}";
        assert_eq!(depth_error(flat, 1), None);
        assert!(depth_error(&"{{#if a}}".repeat(3), 2).is_some());
    }
}
