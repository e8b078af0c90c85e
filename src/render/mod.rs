//! Messages from Handlebars templates: the templates and partials of every
//! language loaded, a message's language chosen, its subject and bodies rendered.

mod compiled;
mod context;
mod depth;
mod direct;
mod helpers;
mod includes;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use handlebars::template::TemplateElement;
use handlebars::{Context, Handlebars, RenderError, RenderErrorReason, Template, TemplateError};
use serde::{Deserialize, Serialize};

use crate::config::{Config, Limits};
use crate::diagnostics::files_with_extension;
use crate::diagnostics::{
    Location, Problem, Problems, check_yaml_depth, read_within_limit, yaml_problem,
};
use crate::rules::{CustomerView, INTEREST_RATE_NOT_SET, InvoiceView, ScriptError, Scripts};

use compiled::CompiledSubject;
pub use compiled::SubjectData;
pub use context::{MessageContext, Parts, StatementLine, message_context};
use direct::{MessageData, Prepared, Program};
use helpers::registry;
use includes::Includes;

/// The text of a message, rendered from its template: subject, body and
/// (when the template has one) the HTML body.
#[derive(Debug, Clone, Serialize)]
pub struct Rendered {
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
    /// The subject written without Handlebars, when it is that simple.
    compiled_subject: Option<CompiledSubject>,
    /// What the subject, the body and the HTML body need of it.
    message_parts: Parts,
    html_file: Option<PathBuf>,
    /// The whole message written without Handlebars, when it can be.
    programs: Option<Programs>,
}

/// A template's subject, body and HTML body compiled ([`Program`]).
#[derive(Debug, Clone)]
struct Programs {
    subject: Program,
    body: Program,
    html: Option<Program>,
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
    /// What each partial of the text and the HTML registry includes.
    text_includes: Includes,
    html_includes: Includes,
    /// The functions of `rules/*.rhai`, helpers in these registries.
    scripts: Arc<Scripts>,
    /// The size, block nesting and front matter nesting a template file may have.
    limits: Limits,
}

pub struct Templates {
    languages: hashbrown::HashMap<String, LanguageSet>,
    default_language: String,
    /// `company` and `rates` as every message's context has them.
    company: serde_json::Value,
    rates: serde_json::Value,
    /// The templates folder, to name the file a missing template should be.
    dir: PathBuf,
}

/// A template as a message in some language uses it ([`Templates::find`]).
#[derive(Clone, Copy)]
pub struct Resolved<'t> {
    /// The language of the template's version the message uses.
    pub language: &'t str,
    /// That version's subject, when it is compiled.
    subject: Option<&'t CompiledSubject>,
}

impl Resolved<'_> {
    /// The subject of the template found, in the language found, when it
    /// is compiled ([`CompiledSubject`]): the same text as
    /// [`Templates::render`] gives, a few times faster. `None` for the
    /// others, which `render` renders.
    pub fn quick_subject(&self, data: &SubjectData) -> Option<String> {
        Some(one_line(self.subject?.render(data)))
    }
}

/// The text and HTML files of one template or partial in one language.
type TextAndHtml = (Option<PathBuf>, Option<PathBuf>);

thread_local! {
    /// The invoice being rendered, as scripts see it. Handlebars hands helpers
    /// only JSON, but script functions take the typed invoice (exact decimals,
    /// days overdue as of the message date), so a helper finds it here.
    static CURRENT: RefCell<Option<(InvoiceView, CustomerView)>> = const { RefCell::new(None) };

    /// What the last script helper that failed said, located in its
    /// `.rhai` file: Handlebars passes a helper's error on as text only.
    static SCRIPT_FAILURE: RefCell<Option<ScriptError>> = const { RefCell::new(None) };
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
        let naming = "template file names are NAME.LANG.hbs or NAME.LANG.html.hbs";
        let files = hbs_files(dir, naming, |name, lang| (lang, name), problems);
        let naming = "partial file names are NAME.LANG.hbs";
        let in_partials = hbs_files(&dir.join("partials"), naming, |n, l| (n, l), problems);
        let mut partials: BTreeMap<String, BTreeMap<String, TextAndHtml>> = BTreeMap::new();
        for ((name, lang), pair) in in_partials {
            partials.entry(name).or_default().insert(lang, pair);
        }
        let mut templates = Templates {
            languages: hashbrown::HashMap::new(),
            default_language: config.language.clone(),
            company: serde_json::json!(config.company),
            rates: context::rates_json(&config.rates),
            dir: dir.to_path_buf(),
        };
        let mut languages: Vec<&String> = files.keys().map(|(lang, _)| lang).collect();
        languages.dedup();
        // A partial serves several languages (`fr-CA` falls back to `fr`):
        // its unescaped tags are reported once, not once per language.
        let mut reported = BTreeSet::new();
        let mut cycles = BTreeSet::new();
        for lang in languages {
            let mut set = LanguageSet::new(scripts, &config.limits);
            let mut raw_html = RawHtml {
                partials: HashMap::new(),
                reported: &mut reported,
            };
            for (name, by_lang) in &partials {
                let mut chain = language_chain(lang, &config.language);
                if let Some(chosen) = chain.find_map(|l| by_lang.get(l)) {
                    set.add_partial(name, chosen, &mut raw_html, problems);
                }
            }
            set.refuse_cycles(&mut cycles, problems);
            let own = files.range((lang.clone(), String::new())..);
            for ((_, name), pair) in own.take_while(|((l, _), _)| l == lang) {
                set.add_template(lang, name, pair, &mut raw_html, problems);
            }
            templates.languages.insert(lang.clone(), set);
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
    ) -> Result<Rendered, Problem> {
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
                format!("template {} not found", crate::diagnostics::quote(name)),
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
            Ok(Rendered {
                subject,
                body,
                html,
            })
        })();
        CURRENT.with(|c| *c.borrow_mut() = None);
        let failure = SCRIPT_FAILURE.with(|f| f.borrow_mut().take());
        result.map_err(|problem| match failure {
            Some(failure) => in_script(failure, &problem),
            None => problem,
        })
    }

    /// Template `name` as a message in `wanted` uses it: in that language
    /// or the first of its fallbacks it exists in ([`Templates::resolve`];
    /// `wanted` when none has it). A writer of many messages finds each
    /// (template, language) pair once and keeps it: finding takes a few
    /// lookups by name.
    pub fn find<'a>(&'a self, name: &str, wanted: &'a str) -> Resolved<'a> {
        let language = self.resolve(name, wanted).unwrap_or(wanted);
        let subject = self
            .languages
            .get(language)
            .and_then(|set| set.sources.get(name))
            .and_then(|source| source.compiled_subject.as_ref());
        Resolved { language, subject }
    }

    /// The whole message of template `name` in the already resolved
    /// `language`, when it is compiled ([`Program`]) and every value it
    /// reads is there: the same text as [`Templates::render`] gives, many
    /// times faster. `None` for the others, which `render` renders (and
    /// tells what is missing).
    pub fn render_direct(
        &self,
        name: &str,
        language: &str,
        ledger: &Arc<crate::model::Ledger>,
        lines: &[StatementLine],
        policy: &crate::rules::Policy,
        today: chrono::NaiveDate,
    ) -> Option<Rendered> {
        let set = self.languages.get(language)?;
        let source = set.sources.get(name)?;
        let programs = source.programs.as_ref()?;
        let data = MessageData {
            ledger,
            lines,
            policy,
            today,
            language,
            parts: source.message_parts,
            company: &self.company,
            rates: &self.rates,
            scripts: &set.scripts,
        };
        let prepared = Prepared::of(&data);
        let subject = one_line(programs.subject.render(&prepared, false)?);
        let body = programs.body.render(&prepared, false)?;
        let html = match &programs.html {
            Some(html) => Some(html.render(&prepared, true)?),
            None => None,
        };
        Some(Rendered {
            subject,
            body,
            html,
        })
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

impl LanguageSet {
    fn new(scripts: &Arc<Scripts>, limits: &Limits) -> LanguageSet {
        LanguageSet {
            text: registry(false, scripts),
            html: registry(true, scripts),
            sources: hashbrown::HashMap::new(),
            text_partials: HashMap::new(),
            html_partials: HashMap::new(),
            text_includes: Includes::default(),
            html_includes: Includes::default(),
            scripts: scripts.clone(),
            limits: limits.clone(),
        }
    }

    /// Reports the partials that include each other (once across
    /// languages, in `reported`) and takes them out of the registries, so
    /// that a message including one fails to render instead of recursing
    /// until the stack overflows.
    fn refuse_cycles(&mut self, reported: &mut BTreeSet<Location>, problems: &mut Problems) {
        for html in [false, true] {
            let includes = if html {
                &self.html_includes
            } else {
                &self.text_includes
            };
            for (problem, partials) in includes.cycles() {
                for name in &partials {
                    if html {
                        self.html.unregister_template(name);
                    } else {
                        self.text.unregister_template(name);
                    }
                }
                if reported.insert(problem.location.clone()) {
                    problems.push(problem);
                }
            }
        }
    }

    /// Registers partial `name` from the files of the language it is taken in.
    fn add_partial(
        &mut self,
        name: &str,
        (text, html): &TextAndHtml,
        raw_html: &mut RawHtml,
        problems: &mut Problems,
    ) {
        if let Some(file) = text
            && let Some(source) = read_once(file, &self.limits, raw_html.reported, problems)
        {
            let parts = Parts::used_by_with(&source, &self.text_partials);
            self.text_partials
                .insert(name.to_string(), (file.clone(), parts));
            self.text_includes.add(name, file, &source);
            if let Err(e) = self.text.register_partial(name, source) {
                problems.push(template_problem(file, 0, &e));
            }
        }
        // HTML bodies include the HTML version of a partial, else its text one.
        if let Some(file) = html.as_ref().or(text.as_ref())
            && let Some(source) = read_once(file, &self.limits, raw_html.reported, problems)
        {
            let parts = Parts::used_by_with(&source, &self.html_partials);
            self.html_partials
                .insert(name.to_string(), (file.clone(), parts));
            self.html_includes.add(name, file, &source);
            match compile_html(name, &source) {
                Ok((template, scan)) => {
                    self.html.register_template(name, template);
                    raw_html
                        .partials
                        .insert(name.to_string(), (file.clone(), scan));
                }
                Err(e) => problems.push(template_problem(file, 0, &e)),
            }
        }
    }

    /// Registers template `name` of language `lang`, which needs a text file.
    fn add_template(
        &mut self,
        lang: &str,
        name: &str,
        (text, html): &TextAndHtml,
        raw_html: &mut RawHtml,
        problems: &mut Problems,
    ) {
        let Some(text) = text else {
            let Some(html) = html else {
                return;
            };
            problems.error(
                Location::file(html),
                format!("{name}.{lang}.html.hbs needs a text version {name}.{lang}.hbs beside it"),
            );
            return;
        };
        if let Some(source) = register(self, name, (text, html.as_deref()), raw_html, problems) {
            self.sources.insert(name.to_string(), source);
        }
    }
}

/// The `.hbs` files of `dir`, text and HTML, by `key(name, language)`; a
/// file not named `NAME.LANG.hbs` or `NAME.LANG.html.hbs` is reported with
/// the `naming` rule.
fn hbs_files<K: Ord>(
    dir: &Path,
    naming: &str,
    key: impl Fn(String, String) -> K,
    problems: &mut Problems,
) -> BTreeMap<K, TextAndHtml> {
    let mut files: BTreeMap<K, TextAndHtml> = BTreeMap::new();
    for path in files_with_extension(dir, "hbs") {
        match split_name(&path) {
            Some((name, lang, html)) => {
                let entry = files.entry(key(name, lang)).or_default();
                if html {
                    entry.1 = Some(path)
                } else {
                    entry.0 = Some(path)
                }
            }
            None => problems.error(Location::file(&path), naming),
        }
    }
    files
}

/// Whitespace runs (newlines included) folded into single spaces: a subject
/// is one header line, whatever the data holds. Most subjects already are.
fn one_line(text: String) -> String {
    if is_one_line(&text) {
        text
    } else {
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

/// Whether [`one_line`] leaves `text` as it is: no whitespace but single
/// spaces between words. Whitespace beyond ASCII (U+0085, U+00A0, U+1680,
/// U+2000–U+200A, U+2028, U+2029, U+202F, U+205F, U+3000) all starts with
/// one of four bytes, which also start much that is not whitespace (`—`,
/// `€`, `°`): only when one is there are characters decoded, and only
/// those it starts. The bytes are tested without stopping at the first
/// line end, which lets the compiler test many at once.
fn is_one_line(text: &str) -> bool {
    let bytes = text.as_bytes();
    // Bytes, not bools: the compiler tests those 16 at a time.
    let (mut line_end, mut wide, mut double) = (0u8, 0u8, 0u8);
    for &byte in bytes {
        // `\t`, `\n`, vertical tab, form feed, `\r`.
        line_end |= u8::from(byte.wrapping_sub(b'\t') < 5);
        wide |= u8::from(byte == 0xc2 || byte.wrapping_sub(0xe1) < 3);
    }
    // Two slices zipped, not `skip(1)`: that zip is vectorised.
    for (&a, &b) in bytes.iter().zip(bytes.get(1..).unwrap_or_default()) {
        double |= u8::from(a == b' ') & u8::from(b == b' ');
    }
    line_end == 0
        && double == 0
        && bytes.first() != Some(&b' ')
        && bytes.last() != Some(&b' ')
        && (wide == 0 || !has_wide_whitespace(text))
}

/// Whether `text` holds whitespace beyond ASCII. Only a character whose
/// first byte is 0xC2, 0xE1, 0xE2 or 0xE3 can be: `memchr` finds those
/// bytes, which never continue a character, so each starts one.
fn has_wide_whitespace(text: &str) -> bool {
    let bytes = text.as_bytes();
    let starts =
        memchr::memchr3_iter(0xc2, 0xe2, 0xe3, bytes).chain(memchr::memchr_iter(0xe1, bytes));
    starts
        .filter_map(|at| text.get(at..).and_then(|rest| rest.chars().next()))
        .any(char::is_whitespace)
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

/// A template or partial's text, refused before Handlebars sees it when
/// larger than `limits.template_bytes` or nested deeper than
/// `limits.template_depth` blocks (its subject included).
fn read(file: &Path, limits: &Limits, problems: &mut Problems) -> Option<String> {
    read_within_limit(
        file,
        "template",
        limits.template_bytes,
        "limits.template_bytes",
    )
    .and_then(|source| {
        // A limit raised past what `check` allows is held to that.
        let depth = limits.template_depth.min(crate::config::TEMPLATE_DEPTH.1);
        depth::check_template_depth(file, &source, depth)?;
        Ok(source)
    })
    .map_err(|p| problems.push(p))
    .ok()
}

/// [`read`] for a partial: both registries and every language falling back
/// to it read its file, and a file refused is reported once (`reported`).
fn read_once(
    file: &Path,
    limits: &Limits,
    reported: &mut BTreeSet<Location>,
    problems: &mut Problems,
) -> Option<String> {
    let mut refused = Problems(Vec::new());
    let source = read(file, limits, &mut refused);
    for problem in refused.0 {
        if reported.insert(problem.location.clone()) {
            problems.push(problem);
        }
    }
    source
}

/// Registers template `name` from its `text` file and optional `html` file.
fn register(
    set: &mut LanguageSet,
    name: &str,
    (text, html): (&Path, Option<&Path>),
    raw_html: &mut RawHtml,
    problems: &mut Problems,
) -> Option<Source> {
    let content = read(text, &set.limits, problems)?;
    let (front, body, body_offset) = match split_front_matter(&content) {
        Some(parts) => parts,
        None => {
            problems.error(Location::at(text, 1, 1), "a template starts with a front matter holding its subject: ---\\nsubject: \"…\"\\n---");
            return None;
        }
    };
    // The front matter starts on the file's second line.
    if let Err(mut problem) = check_yaml_depth(text, front, set.limits.yaml_depth) {
        problem.location.line = problem.location.line.map(|l| l + 1);
        problems.push(problem);
        return None;
    }
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
        let source = read(html, &set.limits, problems)?;
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
    let compile = |registry: &Handlebars, key: &str| Program::compile(registry, key, &set.scripts);
    let programs = (|| {
        Some(Programs {
            subject: compile(&set.text, &subject_key(name))?,
            body: compile(&set.text, &body_key(name))?,
            html: match html {
                Some(_) => Some(compile(&set.html, &body_key(name))?),
                None => None,
            },
        })
    })();
    ok.then(|| Source {
        programs,
        file: text.to_path_buf(),
        body_offset,
        subject_line,
        subject_parts,
        compiled_subject: CompiledSubject::compile(&front.subject, |name| {
            set.scripts.functions.iter().any(|(f, _, _)| f == name)
        }),
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

/// A script helper's failure located in its `.rhai` file when it happened
/// there, followed by where the template called it; else the template's
/// `problem` as it stands.
fn in_script(failure: ScriptError, problem: &Problem) -> Problem {
    if failure.location.line.is_none() {
        return problem.clone();
    }
    let called = format!("called at {}", problem.location);
    let message = match failure.message.strip_suffix(')') {
        Some(open) if open.contains(" (in ") => format!("{open}, {called})"),
        _ => format!("{} ({called})", failure.message),
    };
    Problem::error(failure.location, message)
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A subject is its words joined by single spaces, whatever whitespace
    /// (ASCII or wider) it holds, and is kept as it is when it already is.
    #[test]
    fn subjects_are_folded_onto_one_line() {
        const PIECES: [&str; 24] = [
            "a", " ", "  ", "\t", "\n", "\r\n", "\u{b}", "\u{85}", "\u{a0}", "\u{1680}",
            "\u{2003}", "\u{3000}", "é", "€", "\u{200b}", "\u{1c}", "\u{202f}", "\u{2028}", "—",
            "°", "\u{2029}", "\u{205f}", "ḁ", "、",
        ];
        let mut kept = 0;
        for text in crate::text::tests::random_texts(&PIECES, 8, 20_000) {
            let words = text.split_whitespace().collect::<Vec<_>>().join(" ");
            kept += usize::from(words == text);
            assert_eq!(is_one_line(&text), words == text, "{text:?}");
            assert_eq!(one_line(text), words);
        }
        assert!(kept > 1_000, "{kept}");
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
