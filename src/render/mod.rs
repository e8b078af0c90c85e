//! Messages from Handlebars templates: front matter, languages, partials, locale helpers.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::NaiveDate;
use handlebars::template::TemplateElement;
use handlebars::{
    Context, Handlebars, Helper, HelperDef, HelperResult, JsonRender, Output, RenderContext,
    RenderError, RenderErrorReason, Renderable, ScopedJson, Template, TemplateError,
};
use rhai::Dynamic;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Number, Value, json};

use crate::config::{Config, Rates};
use crate::diagnostics::files_with_extension;
use crate::diagnostics::{Location, Problem, Problems, yaml_problem};
use crate::locale::{format_date, format_money, format_percent, money};
use crate::model::Ledger;
use crate::money::{self, Discount};
use crate::rules::{BUILT_IN_FUNCTIONS, CustomerView, INTEREST_RATE_NOT_SET, InvoiceView, Scripts};
use crate::rules::{Policy, Stage};

/// A rendered reminder.
#[derive(Debug, Clone, Serialize)]
pub struct Message {
    pub subject: String,
    pub body: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FrontMatter {
    subject: String,
}

/// One template file's origin, to locate render errors.
#[derive(Debug, Clone)]
struct Source {
    file: PathBuf,
    /// Lines before the body (the front matter), added to the body's error lines.
    body_offset: usize,
    /// The line of `subject:`.
    subject_line: usize,
    /// What the subject needs of the context.
    subject_parts: Parts,
    /// What the subject, the body and the HTML body need of it.
    message_parts: Parts,
    html_file: Option<PathBuf>,
}

/// The registries of one language: text is never escaped, HTML always is.
struct LanguageSet {
    text: Handlebars<'static>,
    html: Handlebars<'static>,
    // foldhash: every message looks its template up.
    sources: hashbrown::HashMap<String, Source>,
    /// The file of each partial in the text and the HTML registry, so that an
    /// error inside a partial points at the partial, not at its includer, and
    /// what the partial needs of the context.
    text_partials: HashMap<String, (PathBuf, Parts)>,
    html_partials: HashMap<String, (PathBuf, Parts)>,
}

pub struct Templates {
    languages: hashbrown::HashMap<String, LanguageSet>,
    default_language: String,
    /// The templates folder, to name the file a missing template should be.
    dir: PathBuf,
}

/// The text and HTML files of one template or partial in one language.
type TextAndHtml = (Option<PathBuf>, Option<PathBuf>);

thread_local! {
    /// The invoice being rendered, as scripts see it. Handlebars hands helpers
    /// only JSON, but script functions take the typed invoice (exact decimals,
    /// days overdue as of the message date), so a helper finds it here.
    static CURRENT: RefCell<Option<(InvoiceView, CustomerView)>> = const { RefCell::new(None) };
}

/// The language chain of SPEC §5: `fr-CA` → `fr` → the config's language.
pub fn language_chain<'a>(language: &'a str, default: &'a str) -> impl Iterator<Item = &'a str> {
    let primary = language.split('-').next().unwrap_or(language);
    let mut chain = vec![language];
    for l in [
        primary,
        default,
        default.split('-').next().unwrap_or(default),
    ] {
        if !chain.contains(&l) {
            chain.push(l);
        }
    }
    chain.into_iter()
}

impl Templates {
    /// Loads `NAME.LANG.hbs`, `NAME.LANG.html.hbs` and `partials/NAME.LANG.hbs`.
    pub fn load(
        dir: &Path,
        config: &Config,
        scripts: &Arc<Scripts>,
        problems: &mut Problems,
    ) -> Templates {
        let mut files: BTreeMap<(String, String), TextAndHtml> = BTreeMap::new();
        for path in files_with_extension(dir, "hbs") {
            match split_name(&path) {
                Some((name, lang, html)) => {
                    let entry = files.entry((lang, name)).or_default();
                    if html {
                        entry.1 = Some(path)
                    } else {
                        entry.0 = Some(path)
                    }
                }
                None => problems.error(
                    Location::file(&path),
                    "template file names are NAME.LANG.hbs or NAME.LANG.html.hbs",
                ),
            }
        }
        let mut partials: BTreeMap<String, BTreeMap<String, TextAndHtml>> = BTreeMap::new();
        for path in files_with_extension(&dir.join("partials"), "hbs") {
            match split_name(&path) {
                Some((name, lang, html)) => {
                    let entry = partials.entry(name).or_default().entry(lang).or_default();
                    if html {
                        entry.1 = Some(path)
                    } else {
                        entry.0 = Some(path)
                    }
                }
                None => problems.error(
                    Location::file(&path),
                    "partial file names are NAME.LANG.hbs",
                ),
            }
        }
        let mut templates = Templates {
            languages: hashbrown::HashMap::new(),
            default_language: config.language.clone(),
            dir: dir.to_path_buf(),
        };
        let languages: Vec<String> = {
            let mut l: Vec<String> = files.keys().map(|(lang, _)| lang.clone()).collect();
            l.dedup();
            l
        };
        // A partial serves several languages (`fr-CA` falls back to `fr`):
        // its unescaped tags are reported once, not once per language.
        let mut reported = BTreeSet::new();
        for lang in languages {
            let mut set = LanguageSet {
                text: registry(false, scripts),
                html: registry(true, scripts),
                sources: hashbrown::HashMap::new(),
                text_partials: HashMap::new(),
                html_partials: HashMap::new(),
            };
            let mut raw_html = RawHtml {
                partials: HashMap::new(),
                reported: &mut reported,
            };
            for (name, by_lang) in &partials {
                let Some(chosen) =
                    language_chain(&lang, &config.language).find_map(|l| by_lang.get(l))
                else {
                    continue;
                };
                let text = chosen.0.as_ref();
                if let Some(file) = text
                    && let Some(source) = read(file, problems)
                {
                    let parts = Parts::used_by_with(&source, &set.text_partials);
                    set.text_partials
                        .insert(name.clone(), (file.clone(), parts));
                    if let Err(e) = set.text.register_partial(name, source) {
                        problems.push(template_problem(file, 0, &e));
                    }
                }
                // HTML bodies include the HTML version of a partial, else its text one.
                if let Some(file) = chosen.1.as_ref().or(text)
                    && let Some(source) = read(file, problems)
                {
                    let parts = Parts::used_by_with(&source, &set.html_partials);
                    set.html_partials
                        .insert(name.clone(), (file.clone(), parts));
                    match compile_html(name, &source) {
                        Ok((template, scan)) => {
                            set.html.register_template(name, template);
                            raw_html.partials.insert(name.clone(), (file.clone(), scan));
                        }
                        Err(e) => problems.push(template_problem(file, 0, &e)),
                    }
                }
            }
            for ((l, name), (text, html)) in files.range((lang.clone(), String::new())..) {
                if *l != lang {
                    break;
                }
                let Some(text) = text else {
                    let html = html.as_ref().expect("one of the two exists");
                    problems.error(Location::file(html), format!("{name}.{lang}.html.hbs needs a text version {name}.{lang}.hbs beside it"));
                    continue;
                };
                if let Some(source) = register(
                    &mut set,
                    name,
                    (text, html.as_deref()),
                    &mut raw_html,
                    problems,
                ) {
                    set.sources.insert(name.clone(), source);
                }
            }
            templates.languages.insert(lang, set);
        }
        templates
    }

    /// The language whose version of template `name` a message in `language` uses.
    pub fn resolve<'a>(&'a self, name: &str, language: &'a str) -> Option<&'a str> {
        let has = |l: &str| {
            self.languages
                .get(l)
                .is_some_and(|s| s.sources.contains_key(name))
        };
        // Most messages are in their invoice's own language: no chain to build.
        if has(language) {
            return Some(language);
        }
        language_chain(language, &self.default_language).find(|l| {
            self.languages
                .get(*l)
                .is_some_and(|s| s.sources.contains_key(name))
        })
    }

    /// Every (template, language) pair that exists.
    pub fn all(&self) -> Vec<(String, String)> {
        let mut all: Vec<(String, String)> = self
            .languages
            .iter()
            .flat_map(|(lang, set)| {
                set.sources
                    .keys()
                    .map(move |name| (name.clone(), lang.clone()))
            })
            .collect();
        all.sort();
        all
    }

    pub fn languages_of(&self, name: &str) -> Vec<String> {
        let mut langs: Vec<String> = self
            .languages
            .iter()
            .filter(|(_, s)| s.sources.contains_key(name))
            .map(|(l, _)| l.clone())
            .collect();
        langs.sort();
        langs
    }

    /// Renders template `name` in the already resolved `language`. The body is
    /// rendered only when asked (a preview table needs just the subject).
    pub fn render(
        &self,
        name: &str,
        language: &str,
        context: MessageContext,
        body: bool,
    ) -> Result<Message, Problem> {
        // A stage may name a template that does not exist (`check` reports
        // it, but the policy still loads): that reminder cannot be sent, and
        // says why, rather than stopping the whole preview or daemon.
        let Some((set, source)) = self
            .languages
            .get(language)
            .and_then(|set| Some((set, set.sources.get(name)?)))
        else {
            return Err(Problem::error(
                Location::file(&self.dir.join(format!("{name}.{language}.hbs"))),
                format!("template {name:?} not found"),
            ));
        };
        CURRENT.with(|c| *c.borrow_mut() = Some((context.invoice, context.customer)));
        let data = Context::from(context.json);
        let result = (|| {
            let subject = set
                .text
                .render_with_context(&subject_key(name), &data)
                .map_err(|e| render_problem(&source.file, source.subject_line, true, &e))?;
            // A subject is one header line, whatever the data holds.
            let subject = one_line(subject);
            let (body, html) = if body {
                let text = set
                    .text
                    .render_with_context(&body_key(name), &data)
                    .map_err(|e| match partial_file(&e, &set.text_partials) {
                        Some(partial) => render_problem(partial, 0, false, &e),
                        None => render_problem(&source.file, source.body_offset, false, &e),
                    })?;
                let html = match &source.html_file {
                    Some(file) => Some(
                        set.html
                            .render_with_context(&body_key(name), &data)
                            .map_err(|e| {
                                let file = partial_file(&e, &set.html_partials).unwrap_or(file);
                                render_problem(file, 0, false, &e)
                            })?,
                    ),
                    None => None,
                };
                (text, html)
            } else {
                (String::new(), None)
            };
            Ok(Message {
                subject,
                body,
                html,
            })
        })();
        CURRENT.with(|c| *c.borrow_mut() = None);
        result
    }

    /// What rendering a template needs of the context: its subject only, or
    /// the whole message (subject, body, HTML body and their partials).
    pub fn parts(&self, name: &str, language: &str, body: bool) -> Parts {
        self.languages
            .get(language)
            .and_then(|s| s.sources.get(name))
            .map_or(Parts::ALL, |s| {
                if body {
                    s.message_parts
                } else {
                    s.subject_parts
                }
            })
    }

    /// Whether every language's files of template `name` (text and HTML)
    /// say `word`; `check` asks it of the templates of grouped stages.
    pub fn all_mention(&self, name: &str, word: &str) -> bool {
        let mentions = |file: &Path| std::fs::read_to_string(file).is_ok_and(|t| t.contains(word));
        self.languages
            .values()
            .filter_map(|set| set.sources.get(name))
            .all(|s| mentions(&s.file) && s.html_file.as_deref().is_none_or(mentions))
    }

    pub fn has_html(&self, name: &str, language: &str) -> bool {
        self.languages
            .get(language)
            .and_then(|s| s.sources.get(name))
            .is_some_and(|s| s.html_file.is_some())
    }

    pub fn file(&self, name: &str, language: &str) -> Option<&Path> {
        self.languages
            .get(language)
            .and_then(|s| s.sources.get(name))
            .map(|s| s.file.as_path())
    }
}

/// Whitespace runs (newlines included) folded into single spaces: a subject
/// is one header line, whatever the data holds. Most subjects already are.
fn one_line(text: String) -> String {
    let folded = !text.starts_with(' ')
        && !text.ends_with(' ')
        && !text.contains("  ")
        && !text.contains(|c: char| c.is_whitespace() && c != ' ');
    if folded {
        text
    } else {
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

fn subject_key(name: &str) -> String {
    format!("{name}#subject")
}

/// Handlebars keeps templates and partials in one namespace: a body
/// registered under its bare name would shadow (or be shadowed by) the
/// partial of the same name, and `{{> payment}}` would include the wrong text.
fn body_key(name: &str) -> String {
    format!("{name}#body")
}

/// The file of the partial a render error happened in, if it happened in one.
fn partial_file<'a>(
    e: &RenderError,
    partials: &'a HashMap<String, (PathBuf, Parts)>,
) -> Option<&'a Path> {
    partials
        .get(e.template_name.as_deref()?)
        .map(|(file, _)| file.as_path())
}

/// `NAME.LANG.hbs` → (NAME, LANG, false); `NAME.LANG.html.hbs` → (NAME, LANG, true).
fn split_name(path: &Path) -> Option<(String, String, bool)> {
    let stem = path.file_name()?.to_str()?.strip_suffix(".hbs")?;
    let (stem, html) = match stem.strip_suffix(".html") {
        Some(s) => (s, true),
        None => (stem, false),
    };
    let (name, lang) = stem.rsplit_once('.')?;
    (!name.is_empty() && crate::config::is_language_tag(lang))
        .then(|| (name.to_string(), lang.to_string(), html))
}

fn read(file: &Path, problems: &mut Problems) -> Option<String> {
    std::fs::read_to_string(file)
        .map_err(|e| problems.error(Location::file(file), format!("cannot read template: {e}")))
        .ok()
}

/// Registers template `name` from its `text` file and optional `html` file.
fn register(
    set: &mut LanguageSet,
    name: &str,
    (text, html): (&Path, Option<&Path>),
    raw_html: &mut RawHtml,
    problems: &mut Problems,
) -> Option<Source> {
    let content = read(text, problems)?;
    let (front, body, body_offset) = match split_front_matter(&content) {
        Some(parts) => parts,
        None => {
            problems.error(Location::at(text, 1, 1), "a template starts with a front matter holding its subject: ---\\nsubject: \"…\"\\n---");
            return None;
        }
    };
    let front: FrontMatter = match serde_yaml::from_str(front) {
        Ok(f) => f,
        Err(e) => {
            problems.push(yaml_problem(text, &e, 1));
            return None;
        }
    };
    let subject_line = front_matter_line(&content, "subject");
    let mut ok = true;
    if let Err(e) = set
        .text
        .register_template_string(&subject_key(name), &front.subject)
    {
        problems.push(template_problem(text, subject_line - 1, &e));
        ok = false;
    }
    if let Err(e) = set.text.register_template_string(&body_key(name), body) {
        problems.push(template_problem(text, body_offset, &e));
        ok = false;
    }
    let subject_parts = Parts::used_by(&front.subject);
    let mut message_parts = subject_parts.union(Parts::used_by_with(body, &set.text_partials));
    if let Some(html) = html {
        let source = read(html, problems)?;
        message_parts = message_parts.union(Parts::used_by_with(&source, &set.html_partials));
        match compile_html(&body_key(name), &source) {
            Ok((template, scan)) => {
                set.html.register_template(&body_key(name), template);
                raw_html.report(html, &scan, problems);
            }
            Err(e) => {
                problems.push(template_problem(html, 0, &e));
                ok = false;
            }
        }
    }
    ok.then(|| Source {
        file: text.to_path_buf(),
        body_offset,
        subject_line,
        subject_parts,
        message_parts,
        html_file: html.map(Path::to_path_buf),
    })
}

/// What escaping needs to know of one compiled HTML body or partial.
#[derive(Debug, Default)]
struct HtmlScan {
    /// Its `{{{…}}}` and `{{& …}}` tags: (line, column, the tag as written).
    raw: Vec<(usize, usize, String)>,
    /// The partials it includes by name (`{{> NAME}}`, `{{#> NAME}}`).
    partials: Vec<String>,
}

/// Compiles an HTML body or partial with every unescaped tag (`{{{…}}}`,
/// `{{& …}}`) turned into an escaped one, and says where they were: SPEC §5
/// has HTML bodies always escaped, so a customer name such as `<b>Leroy</b>`
/// must never reach a mail client as markup, even from a folder whose check
/// errors were ignored.
fn compile_html(name: &str, source: &str) -> Result<(Template, HtmlScan), TemplateError> {
    let mut template = Template::compile_with_name(source, name.to_string())?;
    let mut scan = HtmlScan::default();
    escape_all(&mut template, source, &mut scan);
    Ok((template, scan))
}

/// Walks a compiled template and the blocks nested in it (`#if`, `#each`,
/// partial blocks, inline partials): their positions are lines and columns
/// of the whole source.
fn escape_all(template: &mut Template, source: &str, scan: &mut HtmlScan) {
    for (i, element) in template.elements.iter_mut().enumerate() {
        match element {
            TemplateElement::HtmlExpression(_) => {
                let TemplateElement::HtmlExpression(expression) =
                    std::mem::replace(element, TemplateElement::Comment(String::new()))
                else {
                    unreachable!("matched just above")
                };
                *element = TemplateElement::Expression(expression);
                if let Some(at) = template.mapping.get(i) {
                    let tag = tag_at(source, at.0, at.1).unwrap_or("{{{…}}}");
                    scan.raw.push((at.0, at.1, tag.to_string()));
                }
            }
            TemplateElement::HelperBlock(block) => {
                for nested in [&mut block.template, &mut block.inverse]
                    .into_iter()
                    .flatten()
                {
                    escape_all(nested, source, scan);
                }
            }
            TemplateElement::PartialExpression(partial)
            | TemplateElement::PartialBlock(partial) => {
                scan.partials
                    .extend(partial.name.as_name().map(str::to_string));
                if let Some(nested) = &mut partial.template {
                    escape_all(nested, source, scan);
                }
            }
            // `{{#*inline "NAME"}}…{{/inline}}`: a partial defined in place.
            TemplateElement::DecoratorBlock(decorator) => {
                if let Some(nested) = &mut decorator.template {
                    escape_all(nested, source, scan);
                }
            }
            _ => {}
        }
    }
}

/// The tag that starts at `line`:`col` (counted in characters, from 1) of
/// `source`, up to its closing braces, when it closes on the same line.
fn tag_at(source: &str, line: usize, col: usize) -> Option<&str> {
    let text = source.lines().nth(line.checked_sub(1)?)?;
    let start = text.char_indices().nth(col.checked_sub(1)?)?.0;
    let rest = &text[start..];
    let close = rest.find("}}")?;
    let braces = rest[close..].len() - rest[close..].trim_start_matches('}').len();
    Some(&rest[..close + braces])
}

/// Reports the unescaped tags of HTML bodies and of the partials they
/// include, in one language. A partial that no HTML body includes is not
/// reported: its text version may rightly hold `{{{…}}}` (the text body is
/// never escaped anyway).
struct RawHtml<'a> {
    /// Each partial of the language's HTML registry: its file and scan.
    partials: HashMap<String, (PathBuf, HtmlScan)>,
    /// Tags already reported, by location, across languages.
    reported: &'a mut BTreeSet<Location>,
}

impl RawHtml<'_> {
    /// Reports the unescaped tags of the HTML body in `file` and of every
    /// partial it includes, directly or through another partial.
    fn report(&mut self, file: &Path, scan: &HtmlScan, problems: &mut Problems) {
        report_tags(self.reported, file, scan, None, problems);
        let mut seen: Vec<&str> = Vec::new();
        let mut pending: Vec<&str> = scan.partials.iter().map(String::as_str).collect();
        while let Some(name) = pending.pop() {
            if seen.contains(&name) {
                continue;
            }
            seen.push(name);
            // An unknown partial fails when rendered, and `check` says so.
            if let Some((partial_file, partial)) = self.partials.get(name) {
                report_tags(self.reported, partial_file, partial, Some(file), problems);
                pending.extend(partial.partials.iter().map(String::as_str));
            }
        }
    }
}

/// Reports the unescaped tags of one HTML body, or of a partial that the
/// HTML body `included_by` includes.
fn report_tags(
    reported: &mut BTreeSet<Location>,
    file: &Path,
    scan: &HtmlScan,
    included_by: Option<&Path>,
    problems: &mut Problems,
) {
    for (line, col, tag) in &scan.raw {
        let location = Location::at(file, *line, *col);
        if !reported.insert(location.clone()) {
            continue;
        }
        let escaped = tag.trim_matches(['{', '}', '&', '~']).trim();
        let mut message = format!(
            "{tag} would insert raw HTML, but HTML bodies are always escaped: write {{{{{escaped}}}}}"
        );
        if let Some(body) = included_by {
            message += &format!(
                " (this partial is included by the HTML body {})",
                body.display()
            );
        }
        problems.error(location, message);
    }
}

/// Splits `---\n<yaml>\n---\n<body>`; returns (yaml, body, lines before the body).
fn split_front_matter(content: &str) -> Option<(&str, &str, usize)> {
    let content = content.strip_prefix('\u{feff}').unwrap_or(content);
    let rest = content
        .strip_prefix("---\n")
        .or_else(|| content.strip_prefix("---\r\n"))?;
    let mut offset = 0;
    for (i, line) in rest.split_inclusive('\n').enumerate() {
        if line.trim_end() == "---" {
            let front = &rest[..offset];
            let body = &rest[offset + line.len()..];
            return Some((front, body, i + 2));
        }
        offset += line.len();
    }
    None
}

fn front_matter_line(content: &str, key: &str) -> usize {
    crate::diagnostics::locate_yaml_key(content, 1, key, None).map_or(2, |(l, _)| l)
}

fn template_problem(file: &Path, line_offset: usize, e: &handlebars::TemplateError) -> Problem {
    let location = match e.pos() {
        Some((line, col)) => Location::at(file, line + line_offset, col),
        None => Location::file(file),
    };
    Problem::error(location, format!("template syntax: {}", e.reason()))
}

fn render_problem(file: &Path, line_offset: usize, subject: bool, e: &RenderError) -> Problem {
    let location = match (e.line_no, e.column_no) {
        (Some(line), Some(col)) if !subject => Location::at(file, line + line_offset, col),
        _ if subject => Location::at(file, line_offset, 1),
        _ => Location::file(file),
    };
    let what = match e.reason() {
        RenderErrorReason::MissingVariable(Some(path))
            if path.ends_with("rates.late_interest_annual") =>
        {
            format!("missing variable {path}: {INTEREST_RATE_NOT_SET}")
        }
        RenderErrorReason::MissingVariable(Some(path)) => {
            format!("missing variable {path} (templates render in strict mode)")
        }
        RenderErrorReason::MissingVariable(None) => {
            "a helper was given a missing variable (templates render in strict mode)".to_string()
        }
        other => other.to_string(),
    };
    let part = if subject { "subject: " } else { "" };
    Problem::error(location, format!("{part}{what}"))
}

fn registry(html: bool, scripts: &Arc<Scripts>) -> Handlebars<'static> {
    let mut hb = Handlebars::new();
    hb.set_strict_mode(true);
    if !html {
        hb.register_escape_fn(handlebars::no_escape);
    }
    for (name, equal) in [("eq", true), ("ne", false)] {
        hb.register_helper(name, Box::new(Equality { name, equal }));
    }
    hb.register_helper("money", Box::new(Localized(money_helper)));
    hb.register_helper("date", Box::new(Localized(date_helper)));
    hb.register_helper("percent", Box::new(Localized(percent_helper)));
    hb.register_helper("days_overdue", Box::new(DaysOverdueHelper));
    hb.register_helper("late_interest", Box::new(LateInterestHelper));
    hb.register_helper(
        "recovery_indemnity",
        Box::new(RecoveryIndemnityHelper {
            indemnity: scripts.rates().recovery_indemnity,
        }),
    );
    // `Scripts::load` reports and leaves out functions named like these.
    debug_assert!(
        scripts
            .functions
            .iter()
            .all(|(name, _, _)| !BUILT_IN_FUNCTIONS.contains(&name.as_str()))
    );
    for (name, _, _) in &scripts.functions {
        hb.register_helper(
            name,
            Box::new(ScriptHelper {
                scripts: scripts.clone(),
                name: name.clone(),
            }),
        );
    }
    hb
}

fn fail(message: impl Into<String>) -> RenderError {
    RenderErrorReason::Other(message.into()).into()
}

fn root_str<'c>(ctx: &'c Context, path: &[&str]) -> Option<&'c str> {
    let mut v = ctx.data();
    for p in path {
        v = v.get(p)?;
    }
    v.as_str()
}

fn param<'a>(h: &'a Helper, i: usize, helper: &'static str) -> Result<&'a Value, RenderError> {
    match h.param(i) {
        Some(p) if !p.is_value_missing() => Ok(p.value()),
        Some(p) => Err(RenderErrorReason::MissingVariable(p.relative_path().cloned()).into()),
        None => Err(RenderErrorReason::ParamNotFoundForIndex(helper, i).into()),
    }
}

/// The exact decimal a number or a numeric string holds. A number's text is
/// read as is (no float on the way, no copy).
fn decimal_of(v: &Value) -> Option<Decimal> {
    match v {
        // A number keeps its text (`arbitrary_precision`), `1e3` included.
        Value::Number(n) => money::parse_decimal(n.as_str()),
        Value::String(s) => Decimal::from_str_exact(s.trim()).ok(),
        _ => None,
    }
}

/// A helper that writes its parameters the way the message's language does.
struct Localized(fn(&Helper, &Context, &str) -> Result<String, RenderError>);

impl HelperDef for Localized {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let language = root_str(ctx, &["language"]).unwrap_or("en");
        Ok(ScopedJson::Derived(Value::String((self.0)(
            h, ctx, language,
        )?)))
    }
}

/// `{{money AMOUNT [CURRENCY]}}`: `1 234,56 €` in French, `€1,234.56` in English.
fn money_helper(h: &Helper, ctx: &Context, language: &str) -> Result<String, RenderError> {
    let value = param(h, 0, "money")?;
    let amount = decimal_of(value)
        .ok_or_else(|| fail(format!("money: {} is not an amount", value.render())))?;
    let currency = match h.param(1) {
        // ISO 4217 codes are upper case; `"usd"` is a slip, not another currency.
        Some(_) => param(h, 1, "money")?.render().trim().to_ascii_uppercase(),
        None => root_str(ctx, &["invoice", "currency"])
            .unwrap_or("EUR")
            .to_string(),
    };
    Ok(format_money(amount, &currency, language))
}

/// `{{date DATE}}`: `1er novembre 2026` in French, `November 1, 2026` in English.
fn date_helper(h: &Helper, _: &Context, language: &str) -> Result<String, RenderError> {
    let value = param(h, 0, "date")?;
    let text = value.as_str().unwrap_or_default();
    let date = text.parse::<NaiveDate>().map_err(|_| {
        let shown = value.render();
        // An empty extra column would otherwise read "date:  is not…".
        fail(match h.param(0).and_then(|p| p.relative_path()) {
            Some(path) if shown.is_empty() => format!("date: {path} is empty"),
            _ => format!("date: {shown} is not a YYYY-MM-DD date"),
        })
    })?;
    Ok(format_date(date, language))
}

/// `{{percent RATE}}`: `12,15 %` in French, `12.15%` in English.
fn percent_helper(h: &Helper, _: &Context, language: &str) -> Result<String, RenderError> {
    let value = param(h, 0, "percent")?;
    let rate = decimal_of(value)
        .ok_or_else(|| fail(format!("percent: {} is not a number", value.render())))?;
    Ok(format_percent(rate, language))
}

/// `eq` and `ne`, in place of Handlebars' own, whose JSON equality tells
/// 1234.00 from 1234 (exact numbers keep their text). When one side is a
/// number and the other a number or a numeric string (`"1234"`, an extra
/// column), they compare as decimals; anything else compares as JSON, so two
/// strings such as postcodes `"01000"` and `"1000"` stay different.
struct Equality {
    name: &'static str,
    equal: bool,
}

impl Equality {
    fn holds(&self, h: &Helper) -> Result<bool, RenderError> {
        let (x, y) = (param(h, 0, self.name)?, param(h, 1, self.name)?);
        // Two strings are never parsed: they compare as text whatever they hold.
        let decimals = (x.is_number() || y.is_number())
            .then(|| decimal_of(x).zip(decimal_of(y)))
            .flatten();
        let same = match decimals {
            Some((a, b)) => a == b,
            None => x == y,
        };
        Ok(same == self.equal)
    }
}

impl HelperDef for Equality {
    /// Also a block, as the built-in is: `{{#eq a b}}…{{else}}…{{/eq}}`.
    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        rc: &mut RenderContext<'reg, 'rc>,
        out: &mut dyn Output,
    ) -> HelperResult {
        let holds = self.holds(h)?;
        if !h.is_block() {
            out.write(if holds { "true" } else { "false" })?;
            return Ok(());
        }
        match if holds { h.template() } else { h.inverse() } {
            Some(t) => t.render(r, ctx, rc, out),
            None => Ok(()),
        }
    }

    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        Ok(ScopedJson::Derived(Value::Bool(self.holds(h)?)))
    }
}

/// `{{days_overdue invoice}}`: days since the due date as of the message date.
struct DaysOverdueHelper;
impl HelperDef for DaysOverdueHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let inv = param(h, 0, "days_overdue")?;
        let due = inv
            .get("due_date")
            .and_then(Value::as_str)
            .and_then(|d| d.parse::<NaiveDate>().ok());
        let today = root_str(ctx, &["today"]).and_then(|d| d.parse::<NaiveDate>().ok());
        match (due, today) {
            (Some(due), Some(today)) => Ok(ScopedJson::Derived(json!((today - due).num_days()))),
            _ => Err(fail(
                "days_overdue: expects an invoice, as in {{days_overdue invoice}}",
            )),
        }
    }
}

/// The date a message is written on: the root `today`.
fn message_date(ctx: &Context) -> Result<NaiveDate, RenderError> {
    root_str(ctx, &["today"])
        .and_then(|d| d.parse::<NaiveDate>().ok())
        .ok_or_else(|| fail("the context has no `today` to compute from"))
}

/// What the money rules read of an invoice-shaped object of the context:
/// the message's `invoice`, or any of the `invoices` of a grouped message.
fn invoice_param<'v>(h: &'v Helper, helper: &'static str) -> Result<&'v Value, RenderError> {
    let invoice = param(h, 0, helper)?;
    if invoice.get("due_date").is_none() || invoice.get("amount_due").is_none() {
        return Err(fail(format!(
            "{helper}: expects an invoice (with its due_date and amount_due), as in {{{{{helper} invoice}}}}, not {}",
            invoice.render()
        )));
    }
    Ok(invoice)
}

/// `{{late_interest INVOICE RATE}}`: the interest on the invoice's amount
/// due at RATE percent a year, as of the message date; an exact amount.
struct LateInterestHelper;
impl HelperDef for LateInterestHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let invoice = invoice_param(h, "late_interest")?;
        // Usually `rates.late_interest_annual`, absent when the config has no rate.
        if let Some(p) = h.param(1)
            && p.is_value_missing()
            && p.relative_path()
                .is_some_and(|path| path.ends_with("late_interest_annual"))
        {
            return Err(fail(format!("late_interest: {INTEREST_RATE_NOT_SET}")));
        }
        let value = param(h, 1, "late_interest")?;
        let not_a_rate = || {
            fail(format!(
                "late_interest: the annual rate must be a percentage that is not negative, not {}",
                value.render()
            ))
        };
        let rate = decimal_of(value).ok_or_else(not_a_rate)?;
        let amount_due = invoice.get("amount_due").and_then(decimal_of);
        let due_date = invoice
            .get("due_date")
            .and_then(Value::as_str)
            .and_then(|d| d.parse::<NaiveDate>().ok());
        let (Some(amount_due), Some(due_date)) = (amount_due, due_date) else {
            return Err(fail(format!(
                "late_interest: {} has no amount_due or due_date to compute from",
                invoice.render()
            )));
        };
        let interest = money::late_interest(amount_due, due_date, message_date(ctx)?, rate)
            .map_err(|e| match e {
                money::InterestError::NegativeRate => not_a_rate(),
                money::InterestError::TooLarge => fail("late_interest: the amount is too large"),
            })?;
        Ok(ScopedJson::Derived(amount_json(interest)))
    }
}

/// `{{recovery_indemnity INVOICE}}`: the config's indemnity, or 0.00 for an
/// invoice or customer tagged b2c; an exact amount.
struct RecoveryIndemnityHelper {
    indemnity: Decimal,
}
impl HelperDef for RecoveryIndemnityHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let invoice = invoice_param(h, "recovery_indemnity")?;
        // Its customer's tags, found in the ledger by the invoice number;
        // the object's own tags for an invoice the ledger does not have.
        let number = invoice.get("number").and_then(Value::as_str);
        let indemnity = CURRENT.with(|current| match (&*current.borrow(), number) {
            (Some((view, _)), Some(number)) if let Some(i) = view.ledger.find(number) => {
                let tags = view.ledger.customer(i).tags.iter();
                money::recovery_indemnity(self.indemnity, tags.map(|t| &**t))
            }
            _ => {
                let own = invoice.get("tags").and_then(Value::as_array);
                let tags = own.into_iter().flatten().filter_map(Value::as_str);
                money::recovery_indemnity(self.indemnity, tags)
            }
        });
        Ok(ScopedJson::Derived(amount_json(indemnity)))
    }
}

/// A function of `rules/*.rhai` called from a template.
struct ScriptHelper {
    scripts: Arc<Scripts>,
    name: String,
}
impl HelperDef for ScriptHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let current = CURRENT.with(|c| c.borrow().clone());
        let mut args = Vec::with_capacity(h.params().len());
        for (i, p) in h.params().iter().enumerate() {
            let path = p.relative_path().map(String::as_str);
            args.push(match (path, &current) {
                (Some("invoice"), Some((inv, _))) => Dynamic::from(inv.clone()),
                (Some("customer"), Some((_, cust))) => Dynamic::from(cust.clone()),
                _ => to_dynamic(param(h, i, "script function")?),
            });
        }
        let result = self
            .scripts
            .call(&self.name, args)
            .map_err(|e| fail(format!("{}: {}", self.name, e.message)))?;
        Ok(ScopedJson::Derived(from_dynamic(result)))
    }
}

fn to_dynamic(v: &Value) -> Dynamic {
    match v {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => Dynamic::from(*b),
        // What a script would get for the same value: an integer stays an
        // INT (`days_overdue`, `open_count`), an amount such as 1234.00 is an
        // exact Decimal, never a float nor a string.
        Value::Number(n) => match n.as_i64() {
            Some(i) => Dynamic::from(i),
            None => decimal_of(v).map_or(Dynamic::UNIT, Dynamic::from),
        },
        Value::String(s) => Dynamic::from(s.clone()),
        Value::Array(a) => Dynamic::from(a.iter().map(to_dynamic).collect::<rhai::Array>()),
        Value::Object(o) => Dynamic::from(
            o.iter()
                .map(|(k, v)| (k.as_str().into(), to_dynamic(v)))
                .collect::<rhai::Map>(),
        ),
    }
}

fn from_dynamic(d: Dynamic) -> Value {
    // A script's decimal is a number to templates too, like the amounts:
    // `{{#if (total_claimed invoice)}}` is false for 0.00.
    if let Ok(dec) = d.as_decimal() {
        return exact_number(dec.to_string());
    }
    if let Ok(i) = d.as_int() {
        return json!(i);
    }
    if let Ok(b) = d.as_bool() {
        return json!(b);
    }
    if d.is_unit() {
        return Value::Null;
    }
    if d.is_string() {
        return Value::String(d.into_string().unwrap_or_default());
    }
    if d.is_array() {
        return Value::Array(
            d.into_array()
                .unwrap_or_default()
                .into_iter()
                .map(from_dynamic)
                .collect(),
        );
    }
    Value::String(d.to_string())
}

/// Everything a template sees for one message, plus the typed views its
/// script helpers need.
pub struct MessageContext {
    pub json: Value,
    pub invoice: InvoiceView,
    pub customer: CustomerView,
}

/// An exact JSON number for a template context. serde_json's
/// `arbitrary_precision` keeps its text, so it renders as written (`1234.00`),
/// while `#if`, `eq` and `gt` see a number: `0.00` is false, `1234.00` equals
/// `1234`. As a string it would be truthy and compare as text.
fn exact_number(text: String) -> Value {
    match text.parse::<Number>() {
        Ok(n) => Value::Number(n),
        // A decimal's text is always a JSON number; keep the text if not.
        Err(_) => Value::String(text),
    }
}

/// An amount for a template context: an exact number with at least cents.
fn amount_json(d: Decimal) -> Value {
    exact_number(money(d))
}

/// The fields an invoice shows to templates, in the order of `invoice_json`.
const INVOICE_FIELDS: [&str; 17] = [
    "number",
    "customer_id",
    "customer_name",
    "email",
    "issue_date",
    "due_date",
    "amount",
    "amount_paid",
    "amount_due",
    "currency",
    "status",
    "paid_date",
    "language",
    "tags",
    "promise_date",
    "days_overdue",
    "extra",
];

/// The fields a customer shows to templates, in the order of `customer_json`.
const CUSTOMER_FIELDS: [&str; 10] = [
    "id",
    "name",
    "email",
    "language",
    "tags",
    "open_count",
    "total_due",
    "overdue_count",
    "late_paid_ratio",
    "avg_days_late",
];

/// Every field of `CUSTOMER_FIELDS`, as a mask for `customer_json`.
const ALL_CUSTOMER_FIELDS: u32 = (1 << CUSTOMER_FIELDS.len()) - 1;

/// Every field of `INVOICE_FIELDS`, as a mask for `invoice_json`.
pub const ALL_INVOICE_FIELDS: u32 = (1 << INVOICE_FIELDS.len()) - 1;

/// The JSON an invoice shows to templates; `fields` selects by bit (in the
/// order of `INVOICE_FIELDS`).
pub fn invoice_json(ledger: &Ledger, index: usize, today: NaiveDate, fields: u32) -> Value {
    let inv = &ledger.invoices[index];
    let mut map = serde_json::Map::new();
    for (bit, name) in INVOICE_FIELDS.iter().enumerate() {
        if fields & (1 << bit) == 0 {
            continue;
        }
        let value = match bit {
            0 => json!(inv.number),
            1 => json!(inv.customer_id),
            2 => json!(inv.customer_name),
            3 => json!(inv.email),
            4 => json!(inv.issue_date.to_string()),
            5 => json!(inv.due_date.to_string()),
            6 => amount_json(inv.amount),
            7 => amount_json(inv.amount_paid),
            8 => amount_json(inv.amount_due()),
            9 => json!(inv.currency),
            10 => json!(inv.status.as_str()),
            // An optional date the invoice lacks is left out rather than
            // null: in strict mode `{{invoice.paid_date}}` is then an error
            // (a null would render blank in a customer's mailbox), while
            // `{{#if invoice.paid_date}}` still works.
            11 => match inv.paid_date {
                Some(d) => json!(d.to_string()),
                None => continue,
            },
            12 => json!(ledger.language_of(index)),
            13 => json!(inv.tags),
            14 => match inv.promise_date {
                Some(d) => json!(d.to_string()),
                None => continue,
            },
            15 => json!(inv.days_overdue(today)),
            // Every extra column of every feed, empty where this invoice's feed
            // lacks it, so that one template serves invoices from all feeds.
            _ => Value::Object(
                ledger
                    .extra_columns
                    .iter()
                    .map(|c| {
                        let v = inv.extra.get(c).map_or("", String::as_str);
                        (c.clone(), Value::String(v.to_string()))
                    })
                    .collect(),
            ),
        };
        map.insert((*name).to_string(), value);
    }
    Value::Object(map)
}

/// The JSON a customer shows to templates; `fields` selects by bit (in the
/// order of `CUSTOMER_FIELDS`).
fn customer_json(ledger: &Ledger, customer: usize, today: NaiveDate, fields: u32) -> Value {
    let c = &ledger.customers[customer];
    let mut map = serde_json::Map::new();
    for (bit, name) in CUSTOMER_FIELDS.iter().enumerate() {
        if fields & (1 << bit) == 0 {
            continue;
        }
        let value = match bit {
            0 => json!(c.id),
            1 => json!(c.name),
            2 => json!(c.email),
            3 => json!(ledger.customer_language(customer)),
            4 => json!(c.tags),
            5 => json!(c.open_count),
            6 => amount_json(c.total_due),
            7 => json!(c.overdue_count(today)),
            8 => exact_number(c.late_paid_ratio.to_string()),
            _ => exact_number(c.avg_days_late.to_string()),
        };
        map.insert((*name).to_string(), value);
    }
    Value::Object(map)
}

/// What a message context holds: some of its top-level objects (invoice,
/// customer, stage, policy, company, rates, discount) and some fields of the invoice. A
/// subject names few of them, and building only those makes a preview of a
/// million reminders several times cheaper; a body always gets everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parts {
    objects: u8,
    invoice_fields: u32,
    customer_fields: u32,
}

impl Parts {
    const INVOICE: u8 = 1;
    const CUSTOMER: u8 = 2;
    const STAGE: u8 = 4;
    const POLICY: u8 = 8;
    const COMPANY: u8 = 16;
    const STATEMENT: u8 = 32;
    const RATES: u8 = 64;
    const DISCOUNT: u8 = 128;
    const NONE: Parts = Parts {
        objects: 0,
        invoice_fields: 0,
        customer_fields: 0,
    };
    pub const ALL: Parts = Parts {
        objects: 255,
        invoice_fields: ALL_INVOICE_FIELDS,
        customer_fields: ALL_CUSTOMER_FIELDS,
    };
    const NAMED: [(&'static str, u8); 9] = [
        ("invoice", Parts::INVOICE),
        ("customer", Parts::CUSTOMER),
        ("stage", Parts::STAGE),
        ("policy", Parts::POLICY),
        ("company", Parts::COMPANY),
        ("invoices", Parts::STATEMENT),
        ("totals", Parts::STATEMENT),
        ("rates", Parts::RATES),
        ("discount", Parts::DISCOUNT),
    ];

    fn has(self, object: u8) -> bool {
        self.objects & object != 0
    }

    /// The parts a template's source names. Anything that can reach a part
    /// without naming it (partials, `this`, `@root`, `lookup`, blocks that
    /// change the context) means everything, and so does passing a whole
    /// invoice or customer to a helper.
    pub fn used_by(source: &str) -> Parts {
        Parts::used_by_with(source, &HashMap::new())
    }

    /// The parts a template's source names, with those of the partials it
    /// includes (`partials`: the ones known so far; an unknown partial, or
    /// one given its own context, may read anything).
    fn used_by_with(source: &str, partials: &HashMap<String, (PathBuf, Parts)>) -> Parts {
        if [
            "this", "@root", "../", "lookup", "{{#with", "{{#each", "{{#>",
        ]
        .iter()
        .any(|w| source.contains(w))
        {
            return Parts::ALL;
        }
        let mut included = Parts::NONE;
        for (at, _) in source.match_indices("{{>") {
            let call = &source[at + 3..];
            let call = &call[..call.find("}}").unwrap_or(call.len())];
            let mut words = call.split_whitespace();
            let found = match (words.next(), words.next()) {
                (Some(name), None) => partials.get(name).map(|(_, parts)| *parts),
                _ => None,
            };
            match found {
                Some(parts) => included = included.union(parts),
                None => return Parts::ALL,
            }
        }
        let mut parts = Parts {
            objects: 0,
            invoice_fields: fields_used(source, "invoice", &INVOICE_FIELDS),
            customer_fields: fields_used(source, "customer", &CUSTOMER_FIELDS),
        };
        for (name, object) in Parts::NAMED {
            if source.contains(name) {
                parts.objects |= object;
            }
        }
        // `money` reads the invoice's currency, `days_overdue` its due date.
        if source.contains("money") || source.contains("days_overdue") {
            parts.objects |= Parts::INVOICE;
            parts.invoice_fields |= 1 << 5 | 1 << 9;
        }
        parts.union(included)
    }

    fn union(self, other: Parts) -> Parts {
        Parts {
            objects: self.objects | other.objects,
            invoice_fields: self.invoice_fields | other.invoice_fields,
            customer_fields: self.customer_fields | other.customer_fields,
        }
    }
}

/// The fields of `object` (by bit, in the order of `fields`) that a
/// template's source reads as `object.field`; all of them when it passes the
/// whole object to a helper (`{{days_overdue invoice}}` reads only the due
/// date) or names a field this list lacks.
fn fields_used(source: &str, object: &str, fields: &[&str]) -> u32 {
    let all = (1u32 << fields.len()) - 1;
    let mut used = 0;
    for (at, _) in source.match_indices(object) {
        let after = &source[at + object.len()..];
        match after.strip_prefix('.') {
            Some(field) => {
                let name: String = field
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                used |= fields
                    .iter()
                    .position(|f| *f == name)
                    .map_or(all, |bit| 1 << bit);
            }
            // Part of a longer word (`invoices`, `customer_name`): not this object.
            None if after.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') => {}
            None if object == "invoice" && source[..at].trim_end().ends_with("days_overdue") => {
                used |= 1 << 5
            }
            None => used = all,
        }
    }
    used
}

/// `rates` in templates: `late_interest_annual` (absent when the config has
/// none, so that using it is an error `check` finds) and `recovery_indemnity`.
fn rates_json(rates: &Rates) -> Value {
    let mut map = serde_json::Map::new();
    if let Some(rate) = rates.late_interest_annual {
        map.insert(
            "late_interest_annual".into(),
            exact_number(rate.to_string()),
        );
    }
    map.insert(
        "recovery_indemnity".into(),
        amount_json(rates.recovery_indemnity),
    );
    Value::Object(map)
}

/// `discount` in templates: the figures of [`Discount`], amounts exact.
fn discount_json(offer: &Discount) -> Value {
    json!({
        "percent": exact_number(offer.percent.to_string()),
        "within_days": offer.within_days,
        "amount": amount_json(offer.amount),
        "amount_due_after": amount_json(offer.amount_due_after),
        "deadline": offer.deadline.to_string(),
        "available": offer.available,
    })
}

/// One invoice of a message and the stage it is at: a message grouped per
/// customer has several, any other one.
#[derive(Clone, Copy)]
pub struct StatementLine<'a> {
    pub invoice: usize,
    pub stage: &'a Stage,
    pub occurrence: u32,
}

fn stage_json(stage: &Stage, occurrence: u32) -> Value {
    json!({
        "id": stage.id,
        "offset": stage.offset,
        "channel": stage.channel.as_str(),
        "template": stage.template,
        "occurrence": occurrence,
    })
}

/// A statement's `invoices` (each invoice with its `stage`) and `totals`
/// (amount due and count per currency, by currency).
fn statement_json(ledger: &Ledger, lines: &[StatementLine], today: NaiveDate) -> (Value, Value) {
    let mut totals: BTreeMap<&str, (Decimal, usize)> = BTreeMap::new();
    let invoices = lines
        .iter()
        .map(|line| {
            let inv = &ledger.invoices[line.invoice];
            let total = totals.entry(&inv.currency).or_default();
            total.0 += inv.amount_due();
            total.1 += 1;
            let mut json = invoice_json(ledger, line.invoice, today, ALL_INVOICE_FIELDS);
            json["stage"] = stage_json(line.stage, line.occurrence);
            json
        })
        .collect();
    let totals = totals
        .into_iter()
        .map(|(currency, (due, count))| {
            json!({"currency": currency, "amount_due": amount_json(due), "count": count})
        })
        .collect();
    (Value::Array(invoices), Value::Array(totals))
}

/// Builds the context of a message about `lines` (the first leads: it is
/// the message's `invoice` and `stage`): `parts` of invoice, customer,
/// stage, policy, company, the statement (`invoices`, `totals`), rates and
/// discount, plus `today` and `language`.
pub fn message_context(
    ledger: &Arc<Ledger>,
    lines: &[StatementLine],
    policy: &Policy,
    today: NaiveDate,
    language: &str,
    config: &Config,
    parts: Parts,
) -> MessageContext {
    let StatementLine {
        invoice: index,
        stage,
        occurrence,
    } = lines[0];
    let customer_index = ledger.customer_index(index);
    let mut root = serde_json::Map::new();
    if parts.has(Parts::INVOICE) {
        root.insert(
            "invoice".into(),
            invoice_json(ledger, index, today, parts.invoice_fields),
        );
    }
    if parts.has(Parts::CUSTOMER) {
        root.insert(
            "customer".into(),
            customer_json(ledger, customer_index, today, parts.customer_fields),
        );
    }
    if parts.has(Parts::STAGE) {
        root.insert("stage".into(), stage_json(stage, occurrence));
    }
    if parts.has(Parts::STATEMENT) {
        let (invoices, totals) = statement_json(ledger, lines, today);
        root.insert("invoices".into(), invoices);
        root.insert("totals".into(), totals);
    }
    if parts.has(Parts::POLICY) {
        root.insert(
            "policy".into(),
            json!({"name": policy.name, "description": policy.description}),
        );
    }
    if parts.has(Parts::COMPANY) {
        root.insert("company".into(), json!(config.company));
    }
    if parts.has(Parts::RATES) {
        root.insert("rates".into(), rates_json(&config.rates));
    }
    // Only under a policy with a discount: `{{#if discount}}` tells.
    if parts.has(Parts::DISCOUNT)
        && let Some(offer) = policy.discount(&ledger.invoices[index], today)
    {
        root.insert("discount".into(), discount_json(&offer));
    }
    root.insert("today".into(), Value::String(today.to_string()));
    root.insert("language".into(), Value::String(language.to_string()));
    MessageContext {
        json: Value::Object(root),
        invoice: InvoiceView {
            ledger: ledger.clone(),
            index,
            today,
        },
        customer: CustomerView {
            ledger: ledger.clone(),
            index: customer_index,
            today,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn language_fallback_chain() {
        assert_eq!(
            language_chain("fr-CA", "en").collect::<Vec<_>>(),
            vec!["fr-CA", "fr", "en"]
        );
        assert_eq!(
            language_chain("de", "fr").collect::<Vec<_>>(),
            vec!["de", "fr"]
        );
    }

    #[test]
    fn subjects_get_only_what_they_name() {
        let p = Parts::used_by(
            "Facture {{invoice.number}} du {{date invoice.due_date}} — {{company.name}}",
        );
        assert_eq!(p.objects, Parts::INVOICE | Parts::COMPANY);
        assert_eq!(p.invoice_fields, 1 << 0 | 1 << 5);
        assert_eq!(
            Parts::used_by("{{money invoice.amount_due}}").invoice_fields,
            1 << 5 | 1 << 8 | 1 << 9
        );
        assert_eq!(
            Parts::used_by("{{late_fee invoice}}").invoice_fields,
            ALL_INVOICE_FIELDS
        );
        assert_eq!(
            Parts::used_by("{{days_overdue invoice}} days").invoice_fields,
            1 << 5 | 1 << 9
        );
        let p =
            Parts::used_by("{{customer.name}} owes {{money customer.total_due}} on {{invoices}}");
        assert_eq!(p.customer_fields, 1 << 1 | 1 << 6);
        assert_eq!(
            p.invoice_fields,
            1 << 5 | 1 << 9,
            "`invoices` is not `invoice`"
        );
        assert_eq!(
            Parts::used_by("{{score customer}}").customer_fields,
            ALL_CUSTOMER_FIELDS
        );
        assert_eq!(Parts::used_by("{{> header}}"), Parts::ALL);
        assert_eq!(Parts::used_by("Hello").objects, 0);
    }

    #[test]
    fn subjects_get_the_rates_and_discount_they_name() {
        let p = Parts::used_by("{{money (late_interest invoice rates.late_interest_annual)}}");
        assert_eq!(p.objects, Parts::INVOICE | Parts::RATES);
        assert_eq!(p.invoice_fields, ALL_INVOICE_FIELDS);
        let p = Parts::used_by("{{#if discount.available}}-{{percent discount.percent}}{{/if}}");
        assert_eq!(p.objects, Parts::DISCOUNT);
        assert!(Parts::ALL.has(Parts::RATES) && Parts::ALL.has(Parts::DISCOUNT));
    }

    /// `source` rendered as text with the built-in helpers and no script.
    fn render_text(source: &str, data: &Value) -> Result<String, String> {
        registry(false, &Arc::new(Scripts::empty()))
            .render_template(source, data)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn money_helpers_work_on_every_invoice_of_a_grouped_message() {
        let data = json!({
            "today": "2026-12-01",
            "rates": rates_json(&Rates {
                late_interest_annual: Some("12.15".parse().unwrap()),
                recovery_indemnity: "40".parse().unwrap(),
            }),
            "invoices": [
                {"number": "F1", "due_date": "2026-11-01", "amount_due": amount_json("1000".parse().unwrap()), "tags": []},
                {"number": "F2", "due_date": "2026-12-01", "amount_due": amount_json("500".parse().unwrap()), "tags": ["b2c"]},
            ],
        });
        let each = "{{#each invoices}}{{number}}: {{late_interest this @root.rates.late_interest_annual}} + {{recovery_indemnity this}}\n{{/each}}";
        assert_eq!(
            render_text(each, &data).unwrap(),
            "F1: 9.99 + 40.00\nF2: 0.00 + 0.00\n"
        );
        // An integer rate is a rate; 0 is no interest.
        assert_eq!(
            render_text(
                "{{late_interest invoices.[0] 12}} {{late_interest invoices.[0] 0}}",
                &data
            )
            .unwrap(),
            "9.86 0.00"
        );
        let err = render_text("{{late_interest rates 12}}", &data).unwrap_err();
        assert!(err.contains("late_interest: expects an invoice"), "{err}");
    }

    #[test]
    fn a_missing_interest_rate_names_the_config_key() {
        let data = json!({
            "today": "2026-12-01",
            "rates": rates_json(&Rates::default()),
            "invoice": {"number": "F1", "due_date": "2026-11-01", "amount_due": amount_json(Decimal::ONE_HUNDRED), "tags": []},
        });
        assert_eq!(
            data["rates"],
            json!({"recovery_indemnity": amount_json(Decimal::new(40, 0))})
        );
        let err = render_text(
            "{{late_interest invoice rates.late_interest_annual}}",
            &data,
        )
        .unwrap_err();
        assert!(
            err.contains("late_interest: rates.late_interest_annual is not set in relance.yaml"),
            "{err}"
        );
        let err = render_text("{{late_interest invoice -1}}", &data).unwrap_err();
        assert!(err.contains("not negative"), "{err}");
    }

    #[test]
    fn the_discount_shows_exact_figures() {
        let offer = crate::money::DiscountTerms {
            percent: "2".parse().unwrap(),
            within_days: 10,
        }
        .offer("1840.00".parse().unwrap(), d("2026-11-23"), d("2026-12-01"));
        assert_eq!(
            discount_json(&offer).to_string(),
            r#"{"amount":36.80,"amount_due_after":1803.20,"available":true,"deadline":"2026-12-03","percent":2,"within_days":10}"#
        );
    }

    #[test]
    fn amounts_are_exact_numbers_in_the_context() {
        use handlebars::JsonTruthy;
        let due = amount_json(Decimal::new(1234, 0));
        assert_eq!(due.to_string(), "1234.00");
        assert_eq!(decimal_of(&due), Some(Decimal::new(123400, 2)));
        assert!(!amount_json(Decimal::ZERO).is_truthy(false));
        assert!(amount_json(Decimal::new(1, 2)).is_truthy(false));
        // A script gets a Decimal, as for `invoice.amount_due` in a script.
        assert_eq!(to_dynamic(&due).as_decimal(), Ok(Decimal::new(123400, 2)));
        assert_eq!(to_dynamic(&json!(7)).as_int(), Ok(7));
        assert_eq!(
            from_dynamic(Dynamic::from(Decimal::new(1274, 0))),
            json!(1274)
        );
    }

    /// `source` rendered by an HTML registry without script helpers.
    fn render_html(source: &str, data: &Value) -> String {
        registry(true, &Arc::new(Scripts::empty()))
            .render_template(source, data)
            .unwrap()
    }

    #[test]
    fn eq_and_ne_compare_numbers_as_decimals() {
        let data = json!({"due": amount_json(Decimal::new(1234, 0)), "zip": "01000"});
        for (source, expected) in [
            ("{{eq due 1234}}", "true"),
            ("{{ne due 1234}}", "false"),
            ("{{eq due \"1234.000\"}}", "true"),
            ("{{eq due 1234.01}}", "false"),
            ("{{#ne due 1234}}yes{{else}}no{{/ne}}", "no"),
            ("{{eq zip \"1000\"}}", "false"),
            ("{{eq zip 1000}}", "true"),
            ("{{eq zip \"01000\"}}", "true"),
        ] {
            assert_eq!(render_html(source, &data), expected, "{source}");
        }
    }

    #[test]
    fn unescaped_html_tags_are_located_and_escaped() {
        let source =
            "<p>{{{a}}}</p>\n{{#if a}}é {{& a}}{{/if}}\n{{> sig}}{{#> layout}}{{{a}}}{{/layout}}";
        let (template, scan) = compile_html("t", source).unwrap();
        assert_eq!(
            scan.raw,
            vec![
                (1, 4, "{{{a}}}".to_string()),
                (2, 12, "{{& a}}".to_string()),
                (3, 23, "{{{a}}}".to_string()),
            ]
        );
        assert_eq!(scan.partials, vec!["sig", "layout"]);
        let mut hb = registry(true, &Arc::new(Scripts::empty()));
        hb.register_template("t", template);
        hb.register_partial("sig", "").unwrap();
        hb.register_partial("layout", "{{> @partial-block}}")
            .unwrap();
        assert_eq!(
            hb.render("t", &json!({"a": "<b>"})).unwrap(),
            "<p>&lt;b&gt;</p>\né &lt;b&gt;\n&lt;b&gt;"
        );
    }

    #[test]
    fn front_matter() {
        let (front, body, offset) =
            split_front_matter("---\nsubject: \"Hi\"\n---\nBody {{x}}\n").unwrap();
        assert_eq!(front, "subject: \"Hi\"\n");
        assert_eq!(body, "Body {{x}}\n");
        assert_eq!(offset, 3);
        assert!(split_front_matter("no front matter").is_none());
    }
}
