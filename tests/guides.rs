//! The guides for finance managers (docs/guide.en.md, docs/guide.fr.md)
//! replayed step by step on a git copy of the sample folder: every block that
//! shows a `$ relance …` command is what the binary prints, and the snippets
//! the steps add come from the guides themselves, so that the two cannot drift.

mod common;

use common::*;

/// A fenced block of a guide: its info string (`yaml`, `handlebars`, or
/// empty for a command and its output) and its lines.
struct Block {
    info: String,
    /// The guide's line of the opening fence, to point at the block.
    line: usize,
    lines: Vec<String>,
}

impl Block {
    /// `$ relance ARGS…` on the first line: the arguments.
    fn command(&self) -> Option<Vec<&str>> {
        let args = self.lines.first()?.strip_prefix("$ relance ")?;
        Some(args.split_whitespace().collect())
    }

    fn text(&self) -> String {
        self.lines.join("\n")
    }
}

struct Guide {
    file: &'static str,
    text: String,
    blocks: Vec<Block>,
}

impl Guide {
    fn read(file: &'static str) -> Guide {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut blocks = Vec::new();
        let mut open: Option<Block> = None;
        for (index, line) in text.lines().enumerate() {
            match (open.take(), line.strip_prefix("```")) {
                (None, Some(info)) => {
                    open = Some(Block {
                        info: info.trim().to_string(),
                        line: index + 1,
                        lines: Vec::new(),
                    })
                }
                (None, None) => {}
                (Some(block), Some("")) => blocks.push(block),
                (Some(mut block), _) => {
                    block.lines.push(line.to_string());
                    open = Some(block);
                }
            }
        }
        assert!(open.is_none(), "{file}: a ``` block is not closed");
        Guide { file, text, blocks }
    }

    fn english() -> Guide {
        Guide::read("docs/guide.en.md")
    }

    fn french() -> Guide {
        Guide::read("docs/guide.fr.md")
    }

    /// The blocks that show a command and what it prints, in the guide's order.
    fn outputs(&self) -> Vec<&Block> {
        self.blocks
            .iter()
            .filter(|b| b.command().is_some())
            .collect()
    }

    /// The one block of kind `info` that holds `part`.
    fn snippet(&self, info: &str, part: &str) -> String {
        let found: Vec<&Block> = self
            .blocks
            .iter()
            .filter(|b| b.info == info && b.text().contains(part))
            .collect();
        assert_eq!(
            found.len(),
            1,
            "{}: one ```{info} block holding {part:?}",
            self.file
        );
        found[0].text()
    }

    /// The inline code span of the prose that starts with `start`.
    fn inline(&self, start: &str) -> String {
        let at = self
            .text
            .find(&format!("`{start}"))
            .unwrap_or_else(|| panic!("{}: no `{start}…` in the prose", self.file));
        let span = &self.text[at + 1..];
        span[..span.find('`').expect("a closing backtick")].to_string()
    }
}

/// Whether `actual` is what `shown` shows: line for line, trailing spaces
/// aside, where a `…` line stands for any lines (none included).
fn shows(shown: &[&str], actual: &[&str]) -> bool {
    match shown.split_first() {
        None => actual.is_empty(),
        Some((&"…", rest)) => (0..=actual.len()).any(|skip| shows(rest, &actual[skip..])),
        Some((line, rest)) => {
            actual
                .first()
                .is_some_and(|a| a.trim_end() == line.trim_end())
                && shows(rest, &actual[1..])
        }
    }
}

/// The first line of `shown` that is not in `actual` in its order, to say
/// where a guide went wrong.
fn first_missing<'a>(shown: &[&'a str], actual: &[&str]) -> Option<&'a str> {
    let mut rest = actual.iter();
    shown
        .iter()
        .filter(|l| **l != "…")
        .find(|l| !rest.any(|a| a.trim_end() == l.trim_end()))
        .copied()
}

/// Runs of spaces as one, to compare a table row quoted in the prose.
fn collapsed(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The English version of the guide's French `last_call` template (the
/// guides leave it to the reader): Northwind Traders, an English-speaking
/// customer, gets it in step 5.
const LAST_CALL_EN: &str = "---
subject: \"Last reminder before a formal notice: invoice {{invoice.number}}\"
---
Hello,

Invoice {{invoice.number}} of {{money invoice.amount_due}}, due on {{date invoice.due_date}}, is still unpaid: {{plural (days_overdue invoice) \"day\" \"days\"}} overdue.

Unless we receive your payment within eight days, we will send you a formal notice by registered letter.

{{> payment}}

Kind regards,

{{> signature}}
";

/// The sample folder in a git repository of its own, its first commit the
/// sample as shipped, so that `--baseline git:HEAD` is the rules before the edit.
fn committed_sample() -> Folder {
    let folder = Folder::sample();
    git(folder.path(), &["init", "-q"]);
    git(folder.path(), &["add", "-A"]);
    git(
        folder.path(),
        &["commit", "-q", "-m", "the sample as shipped"],
    );
    folder
}

/// Replaces `old`, which `rel` must hold exactly once, with `new`.
#[track_caller]
fn edit(folder: &Folder, rel: &str, old: &str, new: &str) {
    let text = folder.read(rel);
    assert_eq!(
        text.matches(old).count(),
        1,
        "{rel} should hold once:\n{old}"
    );
    folder.write(rel, &text.replacen(old, new, 1));
}

/// The edits a guide asks for, built from its own snippets.
struct Edits {
    /// The second reminder as the guide quotes it, and with the new cadence.
    overdue_2: String,
    every_ten_days: String,
    /// The courtesy note as shipped, and with the guide's `when`.
    courtesy: String,
    courtesy_when: String,
    last_call_stage: String,
    last_call_fr: String,
    last_call_test: String,
    /// The last call in the expectations of the sample's first contact.
    last_call_first_contact: String,
}

impl Edits {
    fn of(guide: &Guide) -> Edits {
        let overdue_2 = guide.snippet("yaml", "- id: overdue_2");
        let every_ten_days = overdue_2.replace("offset: 15", "offset: 10");
        assert_ne!(overdue_2, every_ten_days, "step 1 changes 15 to 10");
        let courtesy_when = guide.snippet("yaml", "- id: courtesy");
        let courtesy = courtesy_when
            .lines()
            .filter(|l| !l.trim_start().starts_with("when:"))
            .collect::<Vec<_>>()
            .join("\n");
        assert_ne!(courtesy, courtesy_when, "step 2 adds a `when`");
        Edits {
            overdue_2,
            every_ten_days,
            courtesy,
            courtesy_when,
            last_call_stage: guide.snippet("yaml", "- id: last_call"),
            last_call_fr: guide.snippet("handlebars", "subject:"),
            last_call_test: guide.snippet("yaml", "- name: three weeks late"),
            last_call_first_contact: guide.snippet("yaml", "stage: last_call}"),
        }
    }

    /// The second reminder ten days after the due date (step 1).
    fn second_reminder_after_ten_days(&self, folder: &Folder) {
        edit(
            folder,
            "rules/standard.yaml",
            &self.overdue_2,
            &self.every_ten_days,
        );
    }

    /// The `last_call` stage before the formal notice (step 3).
    fn add_last_call_stage(&self, folder: &Folder) {
        edit(
            folder,
            "rules/standard.yaml",
            "  - id: formal_notice",
            &format!("{}\n  - id: formal_notice", self.last_call_stage),
        );
    }

    /// The policy tests of the `last_call` stage (step 4): the guide's new
    /// case at the end of the file, and the last call in the sample's case
    /// of a first contact, before its formal notice.
    fn add_last_call_tests(&self, folder: &Folder) {
        let shipped_tests = folder.read("rules/standard.test.yaml");
        assert!(shipped_tests.ends_with('\n'));
        folder.write(
            "rules/standard.test.yaml",
            &format!("{shipped_tests}\n{}\n", self.last_call_test),
        );
        let formal_notice =
            "      - {date: 2026-12-30, invoice: T1, stage: formal_notice, channel: letter}\n";
        edit(
            folder,
            "rules/standard.test.yaml",
            formal_notice,
            &format!("{}\n{formal_notice}", self.last_call_first_contact),
        );
    }

    /// The templates of the `last_call` stage, in French and English (step 3).
    fn add_last_call_templates(&self, folder: &Folder) {
        folder
            .write("templates/last_call.fr.hbs", &self.last_call_fr)
            .write("templates/last_call.en.hbs", LAST_CALL_EN);
    }
}

/// A guide replayed on a committed sample folder: each step edits the
/// folder, then checks the guide's next output block against the binary.
struct Replay<'g> {
    guide: &'g Guide,
    outputs: std::vec::IntoIter<&'g Block>,
    folder: Folder,
}

impl<'g> Replay<'g> {
    fn new(guide: &'g Guide) -> Replay<'g> {
        Replay {
            guide,
            outputs: guide.outputs().into_iter(),
            folder: committed_sample(),
        }
    }

    /// Back to the sample as shipped: each step shows one edit.
    fn reset(&self) {
        git(self.folder.path(), &["checkout", "-q", "--", "."]);
        git(self.folder.path(), &["clean", "-q", "-f", "-d"]);
    }

    fn edit(&self, rel: &str, old: &str, new: &str) {
        edit(&self.folder, rel, old, new);
    }

    /// Runs the command of the guide's next output block, which must be
    /// `relance COMMAND` (the step the test has just replayed), and checks
    /// that it prints what the block shows: stdout, then stderr.
    #[track_caller]
    fn next(&mut self, command: &str) -> Run {
        let block = self.outputs.next().unwrap_or_else(|| {
            panic!(
                "{}: no more `$ relance` blocks; expected `relance {command}`",
                self.guide.file
            )
        });
        let args = block.command().expect("an output block");
        let place = format!("{}:{}", self.guide.file, block.line);
        assert_eq!(
            args.join(" "),
            command,
            "{place}: the command the guide shows, and the one the test replays here"
        );
        let run = self.folder.run_inside(&args);
        let printed = format!("{}{}", run.stdout, run.stderr);
        let actual: Vec<&str> = printed.lines().collect();
        let shown: Vec<&str> = block.lines[1..].iter().map(String::as_str).collect();
        assert!(
            shows(&shown, &actual),
            "{place}: `relance {}` does not print what the guide shows{}\n\
             --- the guide\n{}\n--- relance (exit code {})\n{printed}",
            args.join(" "),
            first_missing(&shown, &actual)
                .map(|l| format!(" (first line missing, in order: {l:?})"))
                .unwrap_or_default(),
            shown.join("\n"),
            run.code,
        );
        run
    }

    /// Every output block of the guide was replayed.
    fn finish(mut self) {
        if let Some(block) = self.outputs.next() {
            panic!(
                "{}:{}: a block this test does not replay: {}",
                self.guide.file, block.line, block.lines[0]
            );
        }
    }
}

/// The whole guide, in its order: each step's edit on the sample as shipped,
/// then its command and what it prints.
fn replay(guide: &Guide) {
    let edits = Edits::of(guide);
    let mut r = Replay::new(guide);

    // 1. Change a cadence: the policy tests of the sample notice.
    edits.second_reminder_after_ten_days(&r.folder);
    r.next("check").expect_code(1);
    r.reset();
    r.edit(
        "rules/standard.yaml",
        &edits.overdue_2,
        &edits.overdue_2.replace("offset:", "ofset:"),
    );
    r.next("check").expect_code(1);

    // 2. Write a condition: a misspelt name, then the right one.
    r.reset();
    let habitual_late = guide.snippet("yaml", "applies_to:");
    assert_contains(&r.folder.read("rules/habitual_late.yaml"), &habitual_late);
    r.edit(
        "rules/standard.yaml",
        &edits.courtesy,
        &edits.courtesy_when.replace(
            "'invoice.amount_due >= 100'",
            "'invoice.amount_due >= 100 && custmer.open_count > 1'",
        ),
    );
    r.next("check").expect_code(1);
    r.reset();
    r.edit("rules/standard.yaml", &edits.courtesy, &edits.courtesy_when);
    r.next("explain F2026-0116 --as-of 2026-12-01")
        .expect_code(0);

    // 3. Add a template: the stage alone, then with its templates.
    r.reset();
    edits.add_last_call_stage(&r.folder);
    r.next("check").expect_code(1);
    edits.add_last_call_templates(&r.folder);
    r.next("preview --as-of 2026-12-01 --days 30 --invoice F2026-0121 --render")
        .expect_code(0);

    // 4. Test a policy: the new case passes (with the last call added to the
    // sample's first contact); with the wrong number of days it fails; the
    // cadence of step 1 fails three cases of the sample.
    edits.add_last_call_tests(&r.folder);
    r.next("test").expect_code(0);
    r.edit(
        "rules/standard.test.yaml",
        "\"23 jours de retard\"",
        "\"22 jours de retard\"",
    );
    r.next("test rules/standard.test.yaml").expect_code(1);
    r.reset();
    edits.second_reminder_after_ten_days(&r.folder);
    r.next("test").expect_code(1);

    // 5. See the impact of an edit: the last call, then the condition, then
    // the cadence in the prose's `changed` row.
    r.reset();
    edits.add_last_call_stage(&r.folder);
    edits.add_last_call_templates(&r.folder);
    r.next("preview --baseline git:HEAD --as-of 2026-12-01 --days 30")
        .expect_code(0);
    r.reset();
    r.edit("rules/standard.yaml", &edits.courtesy, &edits.courtesy_when);
    r.next("preview --baseline git:HEAD --as-of 2026-12-01")
        .expect_code(0);
    r.reset();
    edits.second_reminder_after_ten_days(&r.folder);
    let changed = guide.inline("changed ");
    let run = r
        .folder
        .run_inside(&["preview", "--baseline", "git:HEAD", "--as-of", "2026-12-01"])
        .expect_code(0);
    assert!(
        run.stdout
            .lines()
            .any(|l| collapsed(l) == collapsed(&changed)),
        "{}: the row `{changed}` is not in:\n{}",
        guide.file,
        run.stdout
    );

    // 6. Backtest: the sample as shipped, then (in the prose) the cadence of
    // step 1 sends 7 second reminders instead of 6.
    r.reset();
    r.next("backtest --from 2026-09-01 --to 2026-11-30")
        .expect_code(0);
    r.next("backtest --from 2026-09-01 --to 2026-11-30 --format json")
        .expect_code(0);
    edits.second_reminder_after_ten_days(&r.folder);
    let run = r
        .folder
        .run_inside(&["backtest", "--from", "2026-09-01", "--to", "2026-11-30"])
        .expect_code(0);
    assert!(
        run.stdout
            .lines()
            .any(|l| collapsed(l).starts_with("standard overdue_2 7 ")),
        "{}",
        run.stdout
    );
    r.finish();
}

#[test]
fn the_english_guide_prints_what_relance_prints() {
    replay(&Guide::english());
}

#[test]
fn the_french_guide_prints_what_relance_prints() {
    replay(&Guide::french());
}

#[test]
fn both_guides_show_the_same_outputs() {
    let (en, fr) = (Guide::english(), Guide::french());
    let texts = |g: &Guide| -> Vec<String> { g.outputs().iter().map(|b| b.text()).collect() };
    assert_eq!(texts(&en), texts(&fr));
    for start in ["changed ", "reload ok: "] {
        assert_eq!(en.inline(start), fr.inline(start));
    }
}

/// The daemon's one-line summary of a reload, quoted in step 5: the daemon
/// runs on the sample on 1 December (and sends that day's emails), then the
/// cadence change of step 1 is saved.
#[test]
fn the_daemon_reload_line_of_the_guides_is_what_the_daemon_logs() {
    let guide = Guide::english();
    let edits = Edits::of(&guide);
    let folder = Folder::sample();
    let mut daemon = folder.spawn(&DAEMON);
    // "once the 23 reminders of 1 December have gone out (in 16 emails: a
    // customer's reminders of one day are one email)"
    assert_contains(&daemon.expect_evaluation(), " due=16 sent=16 ");
    assert_eq!(
        folder
            .journal()
            .iter()
            .filter(|r| r.state == "sent")
            .count(),
        23
    );

    edits.second_reminder_after_ten_days(&folder);
    let line = daemon.expect_line(DEADLINE, "reloading the cadence", |l| {
        l.contains("reload") && l.contains("rules/standard.yaml")
    });
    assert_contains(&line, &guide.inline("reload ok: "));
}
