//! Issue 12: what `check` knows will fail before a delivery does: template
//! names that leave `templates/`, addresses delivery would refuse, names too
//! long for a file, grouped messages without a common recipient, and Rhai
//! errors located in the `.rhai` file where they happen.

use crate::common::{Folder, assert_contains, template};
use crate::{check_problems, folder, inv, run_expect, with_stages};

/// A policy `p` whose one stage, on the due date, uses template `name`.
fn with_template_name(name: &str) -> Folder {
    let f = folder(&[inv("F1", "2026-12-10", "10")]);
    f.write(
        "rules/p.yaml",
        &format!("name: p\nstages:\n  - id: on_due\n    offset: 0\n    template: '{name}'\n"),
    );
    f
}

#[test]
fn a_template_name_that_leaves_the_templates_folder_is_an_error_at_its_key() {
    for (name, why) in [
        ("../../x", "a path is not a template name"),
        ("/etc/passwd", "a path is not a template name"),
        ("sub/t", "a path is not a template name"),
        (
            "partials/sig",
            "a partial is included by templates with {{> NAME}}",
        ),
        ("..", "a template name does not start with a dot"),
    ] {
        let f = with_template_name(name);
        // The file it names is there: only the name is wrong.
        f.write("templates/partials/sig.fr.hbs", "Signature");
        f.write("x.fr.hbs", &template("S", "B"));
        let problems = check_problems(&f);
        assert_eq!(problems.len(), 1, "{name}: {problems:?}");
        assert!(
            problems[0].starts_with(&format!("rules/p.yaml:5:5: template {name:?}: {why}")),
            "{name}: {problems:?}"
        );
        assert_contains(&problems[0], "templates/NAME.LANG.hbs");
        // Nothing is previewed or sent under a policy that does not load.
        let preview = run_expect(&f, "preview --as-of 2026-12-10 --days 1 --format json", 1);
        assert_eq!(preview.json(), serde_json::json!([]), "{name}");
        let run = run_expect(&f, "run --once --as-of 2026-12-10", 1);
        assert_contains(&run.stderr, "rules/p.yaml:5:5: template");
        assert!(f.files("outbox").is_empty(), "{name}");
    }
}

#[test]
fn a_thank_you_template_is_a_name_too() {
    let f = with_stages(&[inv("F1", "2026-12-10", "10")], &[crate::ON_DUE]);
    f.write(
        "rules/p.yaml",
        "name: p\non_paid: {template: ../t}\nstages:\n  - {id: on_due, offset: 0, template: t}\n",
    );
    let problems = check_problems(&f);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("rules/p.yaml:2:11: template \"../t\": a path"),
        "{problems:?}"
    );
}
